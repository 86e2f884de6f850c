"""XeroClient's generic helpers for unpaged reads, sub-path writes and DELETE, on contact groups and notes."""

import pytest

from sync_pipelines.vendors.xero.client import XeroApiError


def _contact_ids(admin, count: int) -> list[str]:
    return [c["ContactID"] for c in admin.call("GET", "/xero/contacts") if c["ContactStatus"] == "ACTIVE"][:count]


def test_groups_and_members_through_the_generic_helpers(admin, xero):
    client = xero.client()
    first, second = _contact_ids(admin, 2)

    (group,) = client.write("PUT", "ContactGroups", [{"Name": "VIPs"}], "groups:create:vips")
    group_id = group["ContactGroupID"]
    added = client.write(
        "PUT",
        f"ContactGroups/{group_id}/Contacts",
        [{"ContactID": first}, {"ContactID": second}],
        "vips:add",
        key="Contacts",
    )
    (renamed,) = client.write("POST", f"ContactGroups/{group_id}", [{"Name": "Key accounts"}], "vips:rename")

    assert [a["StatusAttributeString"] for a in added] == ["OK", "OK"]
    assert renamed["Name"] == "Key accounts"
    assert [(g["ContactGroupID"], g["Name"]) for g in client.read("ContactGroups")] == [(group_id, "Key accounts")]
    (fetched,) = client.read(f"ContactGroups/{group_id}")
    assert [c["ContactID"] for c in fetched["Contacts"]] == [first, second]

    client.delete(f"ContactGroups/{group_id}/Contacts/{first}")
    assert [c["ContactID"] for c in client.read(f"ContactGroups/{group_id}")[0]["Contacts"]] == [second]
    client.delete(f"ContactGroups/{group_id}/Contacts")
    assert client.read(f"ContactGroups/{group_id}")[0]["Contacts"] == []

    client.write("POST", f"ContactGroups/{group_id}", [{"Status": "DELETED"}], "vips:delete")
    assert client.read("ContactGroups") == []
    with pytest.raises(XeroApiError) as raised:
        client.read(f"ContactGroups/{group_id}")
    assert raised.value.status == 404


def test_a_note_written_under_dropped_connections_lands_once(admin, xero):
    client = xero.client(max_attempts=12)
    (contact_id,) = _contact_ids(admin, 1)
    path = f"Contacts/{contact_id}/History"
    assert client.tenant_id  # discovered before faults start
    admin.reset_stats()
    admin.faults(xero={"drop_rate": 0.75})

    (note,) = client.write("PUT", path, [{"Details": "Synced from the CRM"}], "note:crm:1", key="HistoryRecords")

    admin.faults(xero={"drop_rate": 0})
    assert admin.count("xero", f"PUT /api.xro/2.0/{path}") > 1  # retried under the same Idempotency-Key (§4.3)
    assert note["Details"] == "Synced from the CRM"
    assert [r["Details"] for r in client.read(path, key="HistoryRecords")] == ["Synced from the CRM"]


def test_member_removal_is_retried_and_safe_to_repeat(admin, xero):
    client = xero.client(max_attempts=12)
    (contact_id,) = _contact_ids(admin, 1)
    (group,) = client.write("PUT", "ContactGroups", [{"Name": "Retry"}], "groups:create:retry")
    group_id = group["ContactGroupID"]
    client.write("PUT", f"ContactGroups/{group_id}/Contacts", [{"ContactID": contact_id}], "retry:add", key="Contacts")
    admin.reset_stats()
    admin.faults(xero={"error_rate": 0.75, "retry_after_seconds": 0})

    client.delete(f"ContactGroups/{group_id}/Contacts/{contact_id}")
    # What a retry after a lost 204 would send: the member is already gone, and that is not an error.
    client.delete(f"ContactGroups/{group_id}/Contacts/{contact_id}")

    admin.faults(xero={"error_rate": 0})
    assert admin.count("xero", f"DELETE /api.xro/2.0/ContactGroups/{group_id}/Contacts/{contact_id}") > 2
    assert client.stats.retries > 0
    assert client.read(f"ContactGroups/{group_id}")[0]["Contacts"] == []


def test_sub_resources_must_name_their_element_array(xero):
    client = xero.client()
    with pytest.raises(ValueError):
        client.write("PUT", "Contacts/abc/History", [{"Details": "x"}], "k-1")
    with pytest.raises(ValueError):
        client.read("Contacts/abc/History")
