"""/_admin/intercom/contacts/raw: contacts a broken workspace would serve come back from search as given."""

import json

RAW = '{"type":"contact","id":42,"name":["Ana"],"email":"ana@example.com","updated_at":1900000000,"x":Infinity}'


def test_raw_contacts_come_back_from_search_as_given(ic, admin):
    admin.intercom_reset(contacts=3, companies=0, conversations=0)
    (placeholder,) = admin.post("/intercom/contacts/raw", {"records": [RAW]})["ids"]

    found = ic.search_all({"field": "updated_at", "operator": ">", "value": 1_800_000_000})
    assert [json.dumps(c) for c in found] == [json.dumps(json.loads(RAW))]  # at its own updated_at
    listed = admin.intercom_records("contacts")
    assert len(listed) == 4 and placeholder not in {c["id"] for c in listed}
