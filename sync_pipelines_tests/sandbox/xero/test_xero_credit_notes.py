"""Credit notes and their allocation to invoices, through the sandbox's Accounting API."""

import requests


def _contact_ids(admin, count: int = 1) -> list[str]:
    return [c["ContactID"] for c in admin.call("GET", "/xero/contacts") if c["ContactStatus"] == "ACTIVE"][:count]


def _credit_note(contact_id: str, amount: float = 20, status: str = "AUTHORISED", **extra) -> dict:
    return {
        "Type": "ACCRECCREDIT",
        "Contact": {"ContactID": contact_id},
        "Status": status,
        "LineItems": [{"Description": "Refund", "Quantity": 1, "UnitAmount": amount, "TaxType": "NONE"}],
        **extra,
    }


def _create(api, collection: str, body: dict) -> dict:
    response = api.request("PUT", collection, json={collection: [body]})
    assert response.status_code == 200, response.text
    return response.json()[collection][0]


def _invoice(api, contact_id: str, amount: float = 100, invoice_type: str = "ACCREC") -> dict:
    line = {"Description": "Work", "Quantity": 1, "UnitAmount": amount, "TaxType": "NONE"}
    body = {"Type": invoice_type, "Contact": {"ContactID": contact_id}, "Status": "AUTHORISED", "LineItems": [line]}
    return _create(api, "Invoices", body)


def _get(api, collection: str, record_id: str) -> dict:
    return api.request("GET", f"{collection}/{record_id}").json()[collection][0]


def _allocate(api, credit_note_id: str, invoice_id: str, amount: float, **request) -> requests.Response:
    body = {"Allocations": [{"Invoice": {"InvoiceID": invoice_id}, "Amount": amount, "Date": "2025-03-01"}]}
    return api.request("PUT", f"CreditNotes/{credit_note_id}/Allocations", json=body, **request)


def _messages(response: requests.Response) -> list[str]:
    return [error["Message"] for element in response.json()["Elements"] for error in element["ValidationErrors"]]


def test_credit_notes_are_numbered_listed_and_approved_like_invoices(api, admin):
    (contact_id,) = _contact_ids(admin)
    draft = _create(api, "CreditNotes", _credit_note(contact_id, 46, status="DRAFT", Reference="Returned goods"))
    assert (draft["CreditNoteNumber"], draft["Status"], draft["Type"]) == ("CN-0001", "DRAFT", "ACCRECCREDIT")
    assert (draft["Total"], draft["RemainingCredit"], draft["Allocations"]) == (46.0, 46.0, [])
    supplier = _create(api, "CreditNotes", {**_credit_note(contact_id), "Type": "ACCPAYCREDIT"})
    assert supplier["CreditNoteNumber"] == ""  # only sales credit notes are numbered (spec example)

    paged = api.request("GET", "CreditNotes", params={"page": 1, "where": 'Type=="ACCRECCREDIT"'}).json()
    assert [n["CreditNoteID"] for n in paged["CreditNotes"]] == [draft["CreditNoteID"]]
    assert paged["pagination"]["itemCount"] == 1 and paged["CreditNotes"][0]["LineItems"]
    unpaged = api.request("GET", "CreditNotes").json()["CreditNotes"]
    assert len(unpaged) == 2 and all("LineItems" not in n for n in unpaged)  # lines only when paged

    approved = api.request("POST", f"CreditNotes/{draft['CreditNoteID']}", json={"Status": "AUTHORISED"})
    assert approved.json()["CreditNotes"][0]["Status"] == "AUTHORISED"
    assert _get(api, "CreditNotes", draft["CreditNoteID"])["Reference"] == "Returned goods"
    clash = api.request("PUT", "CreditNotes", json=_credit_note(contact_id, CreditNoteNumber="CN-0001"))
    assert _messages(clash) == ["Credit Note # must be unique."]
    bad_type = api.request("PUT", "CreditNotes", json={**_credit_note(contact_id), "Type": "ACCREC"})
    assert bad_type.status_code == 400 and bad_type.json()["ErrorNumber"] == 14
    assert api.request("GET", "CreditNotes/00000000-0000-0000-0000-000000000000").status_code == 404


def test_allocation_moves_credit_onto_the_invoice_and_over_allocation_is_refused(api, admin):
    (contact_id,) = _contact_ids(admin)
    invoice = _invoice(api, contact_id, 100)
    note = _create(api, "CreditNotes", _credit_note(contact_id, 30))

    allocated = _allocate(api, note["CreditNoteID"], invoice["InvoiceID"], 20)
    assert allocated.status_code == 200, allocated.text
    allocation = allocated.json()["Allocations"][0]
    assert (allocation["Amount"], allocation["Invoice"]["InvoiceID"]) == (20.0, invoice["InvoiceID"])
    assert allocation["StatusAttributeString"] == "OK"

    credited = _get(api, "Invoices", invoice["InvoiceID"])
    assert (credited["AmountDue"], credited["AmountCredited"], credited["Status"]) == (80.0, 20.0, "AUTHORISED")
    assert [(c["CreditNoteID"], c["AppliedAmount"]) for c in credited["CreditNotes"]] == [(note["CreditNoteID"], 20.0)]
    remaining = _get(api, "CreditNotes", note["CreditNoteID"])
    assert remaining["RemainingCredit"] == 10.0
    assert [(a["Amount"], a["Invoice"]["InvoiceID"]) for a in remaining["Allocations"]] == [
        (20.0, invoice["InvoiceID"])
    ]

    # More than the credit left: refused with Xero's message, and nothing moves.
    over = _allocate(api, note["CreditNoteID"], invoice["InvoiceID"], 10.01)
    assert over.status_code == 400 and over.json()["Type"] == "ValidationException"
    assert _messages(over) == ["Credit Note cannot be allocated as amount is greater than amount outstanding"]
    assert _get(api, "Invoices", invoice["InvoiceID"])["AmountDue"] == 80.0

    # Using up the last of the credit makes the credit note PAID; an allocated invoice can no longer be voided.
    assert _allocate(api, note["CreditNoteID"], invoice["InvoiceID"], 10).status_code == 200
    assert _get(api, "CreditNotes", note["CreditNoteID"])["Status"] == "PAID"
    assert _get(api, "Invoices", invoice["InvoiceID"])["AmountDue"] == 70.0
    void = api.request("POST", f"Invoices/{invoice['InvoiceID']}", json={"Status": "VOIDED"})
    assert void.status_code == 400

    # Credit that covers what is due pays the invoice off.
    small = _invoice(api, contact_id, 15)
    big_note = _create(api, "CreditNotes", _credit_note(contact_id, 50))
    assert _allocate(api, big_note["CreditNoteID"], small["InvoiceID"], 15).status_code == 200
    paid = _get(api, "Invoices", small["InvoiceID"])
    assert (paid["Status"], paid["AmountDue"]) == ("PAID", 0.0)
    # Xero gives every reason at once, as reported in waynerobinson/xeroizer#320.
    assert _messages(_allocate(api, big_note["CreditNoteID"], small["InvoiceID"], 1)) == [
        "The invoice you are trying to allocate to has already been paid off",
        "Credit Note cannot be allocated as amount is greater than amount outstanding",
    ]


def test_allocations_are_refused_for_the_wrong_invoice_or_an_unapproved_credit_note(api, admin):
    contact_id, other_contact = _contact_ids(admin, 2)
    bill = _invoice(api, contact_id, 50, invoice_type="ACCPAY")
    draft = _create(api, "CreditNotes", _credit_note(contact_id, status="DRAFT"))
    refused = _allocate(api, draft["CreditNoteID"], bill["InvoiceID"], 5)
    assert refused.status_code == 400
    assert _messages(refused) == [
        "Only AUTHORISED credit notes can be allocated (status is DRAFT)",
        "Credit Note cannot be allocated to an incorrect invoice type",
    ]
    note = _create(api, "CreditNotes", _credit_note(contact_id))
    someone_else = _invoice(api, other_contact, 50)
    reported = _allocate(api, note["CreditNoteID"], someone_else["InvoiceID"], 5, params={"summarizeErrors": "false"})
    assert reported.status_code == 200
    element = reported.json()["Allocations"][0]
    assert element["StatusAttributeString"] == "ERROR"
    assert [e["Message"] for e in element["ValidationErrors"]] == [
        "A credit note can only be allocated to an invoice for the same contact"
    ]
    missing = api.request("PUT", "CreditNotes/00000000-0000-0000-0000-000000000000/Allocations", json={"Amount": 1})
    assert missing.status_code == 404


def test_idempotency_key_replays_an_allocation_without_allocating_twice(api, admin):
    (contact_id,) = _contact_ids(admin)
    invoice = _invoice(api, contact_id, 100)
    note_headers = api.headers(**{"Idempotency-Key": "credit-note-1"})
    first_note = api.request("PUT", "CreditNotes", headers=note_headers, json=_credit_note(contact_id, 30))
    replayed_note = api.request("PUT", "CreditNotes", headers=note_headers, json=_credit_note(contact_id, 30))
    assert replayed_note.content == first_note.content
    assert len(api.request("GET", "CreditNotes").json()["CreditNotes"]) == 1
    note_id = first_note.json()["CreditNotes"][0]["CreditNoteID"]

    headers = api.headers(**{"Idempotency-Key": "allocate-1"})
    first = _allocate(api, note_id, invoice["InvoiceID"], 25, headers=headers)
    replay = _allocate(api, note_id, invoice["InvoiceID"], 25, headers=headers)
    assert first.status_code == replay.status_code == 200 and replay.content == first.content
    assert _get(api, "Invoices", invoice["InvoiceID"])["AmountDue"] == 75.0
    assert _get(api, "CreditNotes", note_id)["RemainingCredit"] == 5.0
    mismatch = _allocate(api, note_id, invoice["InvoiceID"], 5, headers=headers)
    assert mismatch.status_code == 400
    assert mismatch.json()["Detail"] == "Idempotency Key: allocate-1 is used with a different request."


def test_credit_note_webhook_events_carry_type_and_status(api, admin, receiver):
    admin.webhooks(url=receiver.url)
    (contact_id,) = _contact_ids(admin)
    invoice = _invoice(api, contact_id, 100)
    note = _create(api, "CreditNotes", _credit_note(contact_id, status="DRAFT"))
    note_id, invoice_id = note["CreditNoteID"], invoice["InvoiceID"]
    approved = api.request("POST", f"CreditNotes/{note_id}", json={"Status": "AUTHORISED"}).json()["CreditNotes"][0]
    assert _allocate(api, note_id, invoice_id, 20).status_code == 200
    admin.flush_webhooks()

    changes = [
        ("INVOICE", "CREATE", invoice),
        ("CREDITNOTE", "CREATE", note),
        ("CREDITNOTE", "UPDATE", approved),
        ("CREDITNOTE", "UPDATE", _get(api, "CreditNotes", note_id)),  # the allocation used all the credit
        ("INVOICE", "UPDATE", _get(api, "Invoices", invoice_id)),
    ]
    # One event per resource and UpdatedDateUTC: two writes within a millisecond are announced once, with the
    # credit note's data as it was last.
    expected: dict[tuple[str, str], list] = {}
    for category, event_type, record in changes:
        record_id = record["CreditNoteID"] if category == "CREDITNOTE" else record["InvoiceID"]
        data = {"Type": record["Type"], "Status": record["Status"]} if category == "CREDITNOTE" else None
        key = (record_id, record["UpdatedDateUTC"])
        expected.setdefault(key, [category, event_type, record_id, data])[3] = data
    events = [(e["eventCategory"], e["eventType"], e["resourceId"], e.get("data")) for e in receiver.events()]
    # xero-webhooks.yaml CreditNoteWebhookEvent: data carries the credit note's Type and Status.
    assert events == [tuple(event) for event in expected.values()]
    assert {"Type": "ACCRECCREDIT", "Status": "PAID"} in [event[3] for event in events]
    assert receiver.events()[1]["resourceUrl"].endswith(f"/xero/api/api.xro/2.0/CreditNotes/{note_id}")
