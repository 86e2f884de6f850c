"""The Accounting API's explicit filters: searchTerm, createdByMyApp, and the refusal of any parameter it does not
apply (a filter Xero would honour but the sandbox ignored would let a client bug pass here and fail in production)."""

SEARCHED = {
    "Invoices": ("InvoiceNumber", "Reference"),
    "Contacts": ("Name", "FirstName", "LastName", "ContactNumber", "EmailAddress"),
}


def _matching(records: list[dict], collection: str, term: str) -> list[str]:
    """IDs of the records with `term` in a searched field, in any case (spec getInvoices, getContacts)."""
    id_field = collection[:-1] + "ID"
    return [
        record[id_field]
        for record in records
        if any(term.casefold() in (record.get(field) or "").casefold() for field in SEARCHED[collection])
    ]


def _ids(records: list[dict], collection: str) -> list[str]:
    return [record[collection[:-1] + "ID"] for record in records]


def test_search_term_finds_invoices_by_number_or_reference_in_any_case(api):
    invoices = api.all_pages("Invoices")
    number = invoices[45]["InvoiceNumber"]
    reference = next(i["Reference"] for i in invoices if len(i["Reference"]) > 4)

    by_number = api.all_pages("Invoices", searchTerm=number.lower())
    by_reference = api.all_pages("Invoices", searchTerm=reference[1:-1].upper())

    assert _ids(by_number, "Invoices") == _matching(invoices, "Invoices", number) != []
    assert invoices[45]["InvoiceID"] in _ids(by_number, "Invoices") and len(by_number) < len(invoices)
    assert _ids(by_reference, "Invoices") == _matching(invoices, "Invoices", reference[1:-1]) != []


def test_search_term_finds_contacts_by_name_person_number_or_email(api):
    contacts = api.all_pages("Contacts")
    with_email = next(c for c in contacts if c["EmailAddress"])
    surname = with_email["Name"].split()[-1]
    mailbox = with_email["EmailAddress"].split("@")[0]

    for term in (surname.upper(), mailbox.title()):
        found = api.all_pages("Contacts", searchTerm=term)
        assert _ids(found, "Contacts") == _matching(contacts, "Contacts", term) != []
        assert len(found) < len(contacts)
    assert api.all_pages("Contacts", searchTerm="no contact is called this") == []


def test_created_by_my_app_lists_only_invoices_created_through_the_api(api, admin):
    contact_id = next(c["ContactID"] for c in admin.call("GET", "/xero/contacts") if c["ContactStatus"] == "ACTIVE")
    assert api.all_pages("Invoices", createdByMyApp="true") == []  # seeded invoices came from elsewhere

    created = api.request(
        "PUT",
        "Invoices",
        json={"Type": "ACCREC", "Contact": {"ContactID": contact_id}, "LineItems": [{"Description": "Ours"}]},
    ).json()["Invoices"][0]
    seeded = api.all_pages("Invoices")[0]
    api.request("POST", f"Invoices/{seeded['InvoiceID']}", json={"Reference": "edited by the app"})

    assert _ids(api.all_pages("Invoices", createdByMyApp="TRUE"), "Invoices") == [created["InvoiceID"]]
    assert len(api.all_pages("Invoices", createdByMyApp="false")) == len(api.all_pages("Invoices"))
    refused = api.request("GET", "Invoices", params={"createdByMyApp": "yes"})
    assert refused.status_code == 400 and refused.json()["ErrorNumber"] == 16


def test_query_parameters_the_sandbox_does_not_apply_are_refused_not_ignored(api):
    invoice_id = api.all_pages("Invoices")[0]["InvoiceID"]
    for method, path, params in (
        ("GET", "Invoices", {"unitdp": 4}),  # in the spec, not applied by the sandbox
        ("GET", "Invoices", {"page": 1, "serchTerm": "INV"}),  # a typo Xero would silently ignore
        ("GET", "Payments", {"IDs": invoice_id}),  # a filter Xero has only on other collections
        ("GET", "Contacts", {"Statuses": "ACTIVE"}),
        ("GET", "ContactGroups", {"order": "Name"}),
        ("GET", f"Invoices/{invoice_id}", {"page": 1}),
        ("PUT", "Contacts", {"summarizeErrors": "false", "dryRun": "true"}),
    ):
        response = api.request(method, path, params=params, json={"Name": "Not written"} if method == "PUT" else None)
        assert response.status_code == 400, (method, path, params)
        assert (response.json()["ErrorNumber"], response.json()["Type"]) == (16, "QueryParseException")
    assert api.all_pages("Contacts", searchTerm="Not written") == []


def test_the_xero_clients_own_parameters_are_all_applied(api):
    """Those sync_pipelines/vendors/xero/client.py sends: paging, where, includeArchived, summarizeErrors."""
    archived = api.all_pages("Contacts", includeArchived="true", where='ContactStatus=="ARCHIVED"')
    assert archived and {c["ContactStatus"] for c in archived} == {"ARCHIVED"}
    written = api.request("POST", "Contacts", params={"summarizeErrors": "false"}, json={"Name": "Client param"})
    assert written.status_code == 200 and written.json()["Contacts"][0]["StatusAttributeString"] == "OK"
