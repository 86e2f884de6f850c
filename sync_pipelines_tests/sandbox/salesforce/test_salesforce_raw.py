"""/_admin/salesforce/raw: records a broken org would serve come back from queries as given."""

import json

RAW = '{"Id":"junk","Name":["Acme"],"AnnualRevenue":NaN,"SystemModstamp":"2030-01-01T00:00:00.000+0000"}'


def test_raw_accounts_come_back_from_a_query_as_given_in_their_place(sf, admin):
    admin.salesforce_reset(accounts=3, contacts_per_account=0, leads=0, opportunities=0)
    (placeholder,) = admin.post("/salesforce/raw/Account", {"records": [RAW]})["ids"]

    records = sf.records("SELECT Id, Name, SystemModstamp FROM Account ORDER BY SystemModstamp, Id")
    assert len(records) == 4 and json.dumps(records[-1]) == json.dumps(json.loads(RAW))  # sorted at its own stamp
    assert placeholder.startswith("001") and placeholder not in {r["Id"] for r in records}
    newer = sf.records("SELECT Id FROM Account WHERE SystemModstamp > 2029-01-01T00:00:00Z")
    assert [r["Id"] for r in newer] == ["junk"]
