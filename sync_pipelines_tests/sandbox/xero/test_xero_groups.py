"""Contact groups, history notes and contact persons through the sandbox's Accounting API (xero.md §2.5-§2.7)."""

import datetime as dt

import requests

from sync_pipelines.sandbox.xero.dates import parse_net

NOT_FOUND = "The resource you're looking for cannot be found"


def _active_contacts(admin, count: int) -> list[dict]:
    return [c for c in admin.call("GET", "/xero/contacts") if c["ContactStatus"] == "ACTIVE"][:count]


def _create_group(api, name: str) -> dict:
    response = api.request("PUT", "ContactGroups", json={"ContactGroups": [{"Name": name}]})
    assert response.status_code == 200, response.text
    return response.json()["ContactGroups"][0]


def _contact(api, contact_id: str) -> dict:
    return api.request("GET", f"Contacts/{contact_id}").json()["Contacts"][0]


def _error_messages(response: requests.Response) -> list[str]:
    return [error["Message"] for element in response.json()["Elements"] for error in element["ValidationErrors"]]


def test_groups_are_created_listed_renamed_and_deleted(api):
    created = _create_group(api, "VIPs")
    assert created["Name"] == "VIPs" and created["Status"] == "ACTIVE" and created["Contacts"] == []
    group_id = created["ContactGroupID"]
    other = _create_group(api, "Suppliers")

    listed = api.request("GET", "ContactGroups").json()
    assert "pagination" not in listed  # xero.md §3.1: not paged
    assert [g["Name"] for g in listed["ContactGroups"]] == ["VIPs", "Suppliers"]

    renamed = api.request("POST", f"ContactGroups/{group_id}", json={"ContactGroups": [{"Name": "Key accounts"}]})
    assert renamed.json()["ContactGroups"][0]["Name"] == "Key accounts"
    assert api.request("GET", f"ContactGroups/{group_id}").json()["ContactGroups"][0]["Name"] == "Key accounts"

    # Names are unique among active groups, whatever their case (calcinai/xero-php#16 quotes the message).
    clash = api.request("PUT", "ContactGroups", json={"ContactGroups": [{"Name": "suppliers"}]})
    assert clash.status_code == 400 and clash.json()["Type"] == "ValidationException"
    assert _error_messages(clash) == ["A Contact Group already exists with this name"]

    deleted = api.request("POST", f"ContactGroups/{other['ContactGroupID']}", json={"Status": "DELETED"})
    assert deleted.json()["ContactGroups"][0]["Status"] == "DELETED"
    # xero.md §2.6, §7: GETs return ACTIVE groups only, so a deleted group is detected by its absence.
    assert [g["Name"] for g in api.request("GET", "ContactGroups").json()["ContactGroups"]] == ["Key accounts"]
    gone = api.request("GET", f"ContactGroups/{other['ContactGroupID']}")
    assert (gone.status_code, gone.text) == (404, NOT_FOUND)
    assert api.request("POST", f"ContactGroups/{other['ContactGroupID']}", json={"Name": "Back"}).status_code == 404
    assert _create_group(api, "Suppliers")["ContactGroupID"] != other["ContactGroupID"]


def test_group_writes_are_validated_like_other_writes(api):
    response = api.request(
        "PUT",
        "ContactGroups",
        params={"summarizeErrors": "false"},
        json={"ContactGroups": [{"Name": "Ok"}, {"Name": "  "}, {"ContactGroupID": "x", "Name": "Put cannot update"}]},
    )
    ok, blank, with_id = response.json()["ContactGroups"]
    assert response.status_code == 200 and ok["StatusAttributeString"] == "OK"
    assert blank["StatusAttributeString"] == with_id["StatusAttributeString"] == "ERROR"
    assert blank["HasValidationErrors"] is True and blank["ValidationErrors"]

    wrong_case = api.request("PUT", "ContactGroups", json={"ContactGroups": [{"Name": "X", "Status": "active"}]})
    assert wrong_case.status_code == 400 and wrong_case.json()["ErrorNumber"] == 14
    # Groups are created by PUT and changed at /ContactGroups/{id} only (xero.md §2.3).
    assert api.request("POST", "ContactGroups", json={"ContactGroups": [{"Name": "Y"}]}).status_code == 404
    # The sandbox refuses filters it cannot apply rather than ignoring them.
    refused = api.request("GET", "ContactGroups", params={"where": 'Status=="ACTIVE"'})
    assert refused.status_code == 400 and refused.json()["Type"] == "QueryParseException"


def test_an_organisation_has_at_most_100_groups(api):
    body = {"ContactGroups": [{"Name": f"Group {n}"} for n in range(100)]}
    assert api.request("PUT", "ContactGroups", json=body).status_code == 200

    over = api.request("PUT", "ContactGroups", json={"ContactGroups": [{"Name": "One too many"}]})
    assert _error_messages(over) == ["You’ve reached the limit of 100 contact groups."]  # the spec's example

    first = api.request("GET", "ContactGroups").json()["ContactGroups"][0]
    api.request("POST", f"ContactGroups/{first['ContactGroupID']}", json={"Status": "DELETED"})
    assert _create_group(api, "One too many")["Status"] == "ACTIVE"


def test_members_are_added_removed_and_shown_on_the_contact(api, admin):
    group = _create_group(api, "VIPs")
    group_id = group["ContactGroupID"]
    first, second = _active_contacts(admin, 2)

    added = api.request(
        "PUT",
        f"ContactGroups/{group_id}/Contacts",
        json={"Contacts": [{"ContactID": second["ContactID"]}, {"ContactID": first["ContactID"]}]},
    )
    assert added.status_code == 200
    assert [c["ContactID"] for c in added.json()["Contacts"]] == [second["ContactID"], first["ContactID"]]
    again = api.request(
        "PUT", f"ContactGroups/{group_id}/Contacts", json={"Contacts": [{"ContactID": first["ContactID"]}]}
    )
    assert again.status_code == 200  # already a member: nothing changes

    members = api.request("GET", f"ContactGroups/{group_id}").json()["ContactGroups"][0]["Contacts"]
    assert [(m["ContactID"], m["Name"]) for m in members] == [
        (second["ContactID"], second["Name"]),
        (first["ContactID"], first["Name"]),
    ]
    # xero.md §2.5: ContactGroups[] on single and paged GETs, not on the unpaged summary list.
    embedded = {
        "ContactGroupID": group_id,
        "Name": "VIPs",
        "Status": "ACTIVE",
        "Contacts": [],
        "HasValidationErrors": False,
    }
    assert _contact(api, first["ContactID"])["ContactGroups"] == [embedded]
    paged = {c["ContactID"]: c for c in api.all_pages("Contacts")}
    assert paged[first["ContactID"]]["ContactGroups"] == [embedded]
    unpaged = api.request("GET", "Contacts").json()["Contacts"]
    assert all("ContactGroups" not in c for c in unpaged)

    api.request("POST", f"ContactGroups/{group_id}", json={"Name": "Key accounts"})
    assert _contact(api, second["ContactID"])["ContactGroups"][0]["Name"] == "Key accounts"

    removed = api.request("DELETE", f"ContactGroups/{group_id}/Contacts/{first['ContactID']}")
    assert (removed.status_code, removed.content) == (204, b"")
    # A repeated removal (say, a retry after a lost response) finds nothing to do.
    assert api.request("DELETE", f"ContactGroups/{group_id}/Contacts/{first['ContactID']}").status_code == 204
    assert _contact(api, first["ContactID"])["ContactGroups"] == []
    unknown = api.request("DELETE", f"ContactGroups/{group_id}/Contacts/00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 400 and unknown.json()["Type"] == "ValidationException"

    assert api.request("DELETE", f"ContactGroups/{group_id}/Contacts").status_code == 204
    assert api.request("GET", f"ContactGroups/{group_id}").json()["ContactGroups"][0]["Contacts"] == []
    assert _contact(api, second["ContactID"])["ContactGroups"] == []


def test_a_deleted_group_leaves_its_members(api, admin):
    (contact,) = _active_contacts(admin, 1)
    keep, drop = _create_group(api, "Keep"), _create_group(api, "Drop")
    for group in (keep, drop):
        api.request(
            "PUT", f"ContactGroups/{group['ContactGroupID']}/Contacts", json={"ContactID": contact["ContactID"]}
        )
    assert [g["Name"] for g in _contact(api, contact["ContactID"])["ContactGroups"]] == ["Keep", "Drop"]

    api.request("POST", f"ContactGroups/{drop['ContactGroupID']}", json={"ContactGroups": [{"Status": "DELETED"}]})

    assert [g["Name"] for g in _contact(api, contact["ContactID"])["ContactGroups"]] == ["Keep"]
    missing = api.request(
        "PUT", f"ContactGroups/{drop['ContactGroupID']}/Contacts", json={"ContactID": contact["ContactID"]}
    )
    assert missing.status_code == 404
    member = api.request("PUT", f"ContactGroups/{keep['ContactGroupID']}/Contacts", json={"ContactID": "nobody"})
    assert member.status_code == 400 and _error_messages(member)


def test_membership_is_not_a_change_to_the_contact(api, admin, receiver):
    """Decision (xero.md §3.2 lists fields derived elsewhere as not bumping UpdatedDateUTC; membership lives on the
    group): no UpdatedDateUTC bump, no If-Modified-Since hit and no CONTACT webhook for membership changes."""
    admin.webhooks(url=receiver.url)
    (contact,) = _active_contacts(admin, 1)
    contact_id = contact["ContactID"]
    before = _contact(api, contact_id)
    watermark = api.request("GET", "Contacts", params={"page": 1}).json()["Contacts"][-1]["UpdatedDateUTC"]
    group = _create_group(api, "VIPs")

    api.request("PUT", f"ContactGroups/{group['ContactGroupID']}/Contacts", json={"ContactID": contact_id})
    api.request("POST", f"ContactGroups/{group['ContactGroupID']}", json={"Name": "Renamed"})

    after = _contact(api, contact_id)
    assert after["ContactGroups"] and after["UpdatedDateUTC"] == before["UpdatedDateUTC"]
    since = parse_net(watermark) // 1000 + 1
    changed = api.request(
        "GET", "Contacts", params={"page": 1}, headers=api.headers(**{"If-Modified-Since": _iso(since)})
    )
    assert changed.json()["Contacts"] == []
    # A real edit of the same contact is announced, so the silence above is not a dead receiver.
    api.request("POST", f"Contacts/{contact_id}", json={"Website": "https://vip.test"})
    admin.flush_webhooks()
    assert [(e["resourceId"], e["eventType"]) for e in receiver.events()] == [(contact_id, "UPDATE")]


def _iso(epoch_seconds: int) -> str:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_notes_are_added_listed_newest_first_and_never_deleted(api, admin):
    (contact,) = _active_contacts(admin, 1)
    path = f"Contacts/{contact['ContactID']}/History"
    assert api.request("GET", path).json()["HistoryRecords"] == []

    created = api.request("PUT", path, json={"HistoryRecords": [{"Details": "Called about the renewal"}]})
    assert created.status_code == 200
    (echo,) = created.json()["HistoryRecords"]
    # xero.md §2.7 / the spec's HistoryRecordCreated example: the date has no offset in this echo.
    assert set(echo) == {"DateUTCString", "DateUTC", "Details", "ValidationErrors", "StatusAttributeString"}
    assert echo["Details"] == "Called about the renewal" and echo["ValidationErrors"] == []
    assert echo["DateUTC"].endswith(")/") and "+" not in echo["DateUTC"]
    # The docs say POST behaves like PUT (xero.md §2.7).
    assert api.request("POST", path, json={"Details": "Sent the quote"}).status_code == 200

    records = api.request("GET", path).json()["HistoryRecords"]
    assert [r["Details"] for r in records] == ["Sent the quote", "Called about the renewal"]
    assert {(r["Changes"], r["User"]) for r in records} == {("Note", "System Generated")}
    assert parse_net(records[1]["DateUTC"]) == parse_net(echo["DateUTC"])
    assert admin.get(f"/xero/contacts/{contact['ContactID']}/history") == records
    # A note is not an edit of the contact.
    assert _contact(api, contact["ContactID"])["UpdatedDateUTC"] == contact["UpdatedDateUTC"]
    # Notes cannot be deleted (xero.md §2.7, §7).
    assert api.request("DELETE", path).status_code == 405

    too_long = api.request("PUT", path, json={"HistoryRecords": [{"Details": "x" * 2501}]})
    assert too_long.status_code == 400 and _error_messages(too_long)
    blank = api.request("PUT", path, params={"summarizeErrors": "false"}, json={"Details": ""})
    assert blank.json()["HistoryRecords"][0]["StatusAttributeString"] == "ERROR"
    assert api.request("GET", "Contacts/00000000-0000-0000-0000-000000000000/History").status_code == 404
    assert len(api.request("GET", path).json()["HistoryRecords"]) == 2


def test_invoices_keep_notes_too_and_a_keyed_retry_adds_one(api, admin):
    invoice_id = admin.call("GET", "/xero/invoices")[0]["InvoiceID"]
    path = f"Invoices/{invoice_id}/History"
    headers = api.headers(**{"Idempotency-Key": "note-1"})

    first = api.request("PUT", path, headers=headers, json={"Details": "Chased by phone"})
    replay = api.request("PUT", path, headers=headers, json={"Details": "Chased by phone"})

    assert first.status_code == replay.status_code == 200 and first.content == replay.content
    assert [r["Details"] for r in api.request("GET", path).json()["HistoryRecords"]] == ["Chased by phone"]
    assert admin.get(f"/xero/invoices/{invoice_id}/history")[0]["Details"] == "Chased by phone"
    assert api.request("GET", "ContactGroups/whatever/History").status_code == 404  # groups keep no history


def test_contact_persons_are_kept_on_contact_writes(api):
    persons = [
        {"FirstName": "Debbie", "LastName": "Gwyther", "EmailAddress": "debbie@rockstar.test", "IncludeInEmails": True},
        {"FirstName": "Sam", "LastName": "Lee"},
    ]
    created = api.request("PUT", "Contacts", json={"Name": "Rockstar Ltd", "ContactPersons": persons})
    contact_id = created.json()["Contacts"][0]["ContactID"]
    expected = [persons[0], {"FirstName": "Sam", "LastName": "Lee", "EmailAddress": "", "IncludeInEmails": False}]
    assert _contact(api, contact_id)["ContactPersons"] == expected

    api.request("POST", f"Contacts/{contact_id}", json={"Website": "https://rockstar.test"})
    assert _contact(api, contact_id)["ContactPersons"] == expected  # omitted fields stay (xero.md §2.4, §4.1)

    six = api.request(
        "POST", f"Contacts/{contact_id}", json={"ContactPersons": [{"FirstName": str(n)} for n in range(6)]}
    )
    assert six.status_code == 400 and "at most 5" in _error_messages(six)[0]  # xero.md §2.5
    bad_email = api.request("POST", f"Contacts/{contact_id}", json={"ContactPersons": [{"EmailAddress": "nope"}]})
    assert _error_messages(bad_email) == ["Email address must be valid."]
    not_a_list = api.request("POST", f"Contacts/{contact_id}", json={"ContactPersons": {"FirstName": "A"}})
    assert not_a_list.json()["ErrorNumber"] == 14
    assert _contact(api, contact_id)["ContactPersons"] == expected

    api.request("POST", f"Contacts/{contact_id}", json={"ContactPersons": []})
    assert _contact(api, contact_id)["ContactPersons"] == []


def test_admin_manages_groups_as_the_xero_ui_would(api, admin):
    first, second = _active_contacts(admin, 2)
    group = admin.post("/xero/contact-groups", {"Name": "Wholesale", "ContactIDs": [first["ContactID"]]})
    group_id = group["ContactGroupID"]
    assert group["Contacts"] == [{"ContactID": first["ContactID"], "Name": first["Name"]}]

    changed = admin.post(
        f"/xero/contact-groups/{group_id}/members", {"add": [second["ContactID"]], "remove": [first["ContactID"]]}
    )
    assert [c["ContactID"] for c in changed["Contacts"]] == [second["ContactID"]]
    assert _contact(api, second["ContactID"])["ContactGroups"][0]["Name"] == "Wholesale"
    assert admin.post(f"/xero/contact-groups/{group_id}", {"Name": "Trade"})["Name"] == "Trade"
    assert admin.post(f"/xero/contact-groups/{group_id}", {"Status": "DELETED"})["Contacts"] == []
    assert [(g["Name"], g["Status"]) for g in admin.get("/xero/contact-groups")] == [("Trade", "DELETED")]

    def rejected(path: str, body: dict) -> int:
        return requests.post(f"{admin.url}/xero/contact-groups{path}", json=body, timeout=10).status_code

    assert rejected(f"/{group_id}/members", {"add": [first["ContactID"]]}) == 400  # deleted groups stay deleted
    assert rejected("", {"Name": "Bad", "ContactIDs": ["nobody"]}) == 400
    assert rejected("", {"Nmae": "Typo"}) == 400
    assert rejected("/00000000-0000-0000-0000-000000000000", {"Name": "Ghost"}) == 404
    assert admin.get("/xero/contact-groups")[0]["Name"] == "Trade"  # the rejected create left nothing behind

    admin.reset()
    assert admin.get("/xero/contact-groups") == []
