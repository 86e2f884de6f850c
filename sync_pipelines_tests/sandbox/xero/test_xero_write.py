"""Writing through the sandbox's Accounting API: validation modes, idempotency and payments."""

from sync_pipelines.sandbox.xero.dates import parse_net


def _invoice(contact_id: str, description: str = "Consulting", **extra) -> dict:
    return {
        "Type": "ACCREC",
        "Contact": {"ContactID": contact_id},
        "Status": "AUTHORISED",
        "DueDate": "2025-02-01",
        "LineItems": [
            {"Description": description, "Quantity": 2, "UnitAmount": 10.5, "AccountCode": "200", "TaxType": "OUTPUT"}
        ],
        **extra,
    }


def _contact_id(admin) -> str:
    return next(c["ContactID"] for c in admin.call("GET", "/xero/contacts") if c["ContactStatus"] == "ACTIVE")


def test_default_summarize_errors_is_a_400_but_good_elements_are_saved(api, admin):
    contact_id = _contact_id(admin)
    body = {
        "Invoices": [
            _invoice(contact_id, "Saved anyway"),
            _invoice(contact_id, Reference="bad", LineItems=[{"Description": ""}]),
        ]
    }
    response = api.request("PUT", "Invoices", json=body)
    assert response.status_code == 400
    error = response.json()
    assert (error["ErrorNumber"], error["Type"], error["Message"]) == (
        10,
        "ValidationException",
        "A validation exception occurred",
    )
    assert [e["Reference"] for e in error["Elements"]] == ["bad"]
    assert error["Elements"][0]["ValidationErrors"][0]["Message"]
    saved = [
        i
        for i in admin.call("GET", "/xero/invoices")
        if i["LineItems"] and i["LineItems"][0]["Description"] == "Saved anyway"
    ]
    assert len(saved) == 1 and saved[0]["Total"] == 24.15 and saved[0]["TotalTax"] == 3.15


def test_summarize_errors_false_reports_each_element(api, admin):
    contact_id = _contact_id(admin)
    body = {"Invoices": [_invoice(contact_id), {"Type": "ACCREC", "LineItems": []}]}
    response = api.request("POST", "Invoices", params={"summarizeErrors": "false"}, json=body)
    assert response.status_code == 200
    ok, failed = response.json()["Invoices"]
    assert ok["StatusAttributeString"] == "OK" and ok["InvoiceID"] and ok["Status"] == "AUTHORISED"
    assert failed["StatusAttributeString"] == "ERROR" and failed["HasErrors"] is True
    assert "ContactID" in failed["ValidationErrors"][0]["Message"]


def test_bad_enum_or_body_is_post_data_invalid(api, admin):
    wrong_case = api.request("PUT", "Invoices", json=_invoice(_contact_id(admin), LineAmountTypes="EXCLUSIVE"))
    assert wrong_case.status_code == 400 and wrong_case.json()["ErrorNumber"] == 14
    bad_date = api.request("PUT", "Invoices", json=_invoice(_contact_id(admin), DueDate="2024-13-45"))
    assert bad_date.json()["Type"] == "PostDataInvalidException"
    assert api.request("PUT", "Invoices", data=b"{not json").json()["ErrorNumber"] == 14


def test_post_updates_bump_updated_date_and_put_cannot_update(api, admin):
    invoice = api.request("PUT", "Invoices", json=_invoice(_contact_id(admin))).json()["Invoices"][0]
    updated = api.request("POST", f"Invoices/{invoice['InvoiceID']}", json={"Reference": "changed"}).json()["Invoices"][
        0
    ]
    assert updated["Reference"] == "changed"
    assert parse_net(updated["UpdatedDateUTC"]) >= parse_net(invoice["UpdatedDateUTC"])
    again = api.request(
        "PUT",
        "Invoices",
        params={"summarizeErrors": "false"},
        json={"InvoiceID": invoice["InvoiceID"], "Reference": "x"},
    )
    assert again.json()["Invoices"][0]["StatusAttributeString"] == "ERROR"
    voided = api.request("POST", "Invoices", json={"InvoiceID": invoice["InvoiceID"], "Status": "VOIDED"}).json()[
        "Invoices"
    ][0]
    assert (voided["Status"], voided["AmountDue"]) == ("VOIDED", 0.0)
    assert (
        api.request("POST", "Invoices/00000000-0000-0000-0000-000000000000", json={"Reference": "x"}).status_code == 404
    )


def test_idempotency_key_replays_and_rejects_a_different_request(api, admin):
    contact_id = _contact_id(admin)
    before = len(admin.call("GET", "/xero/invoices"))
    headers = api.headers(**{"Idempotency-Key": "create-1"})
    first = api.request("PUT", "Invoices", headers=headers, json=_invoice(contact_id))
    replay = api.request("PUT", "Invoices", headers=headers, json=_invoice(contact_id))
    assert first.status_code == replay.status_code == 200 and replay.content == first.content
    assert len(admin.call("GET", "/xero/invoices")) == before + 1
    mismatch = api.request("PUT", "Invoices", headers=headers, json=_invoice(contact_id, "Something else"))
    assert (
        mismatch.status_code == 400
        and mismatch.json()["Detail"] == "Idempotency Key: create-1 is used with a different request."
    )
    too_long = api.request(
        "PUT", "Invoices", headers=api.headers(**{"Idempotency-Key": "k" * 129}), json=_invoice(contact_id)
    )
    assert too_long.status_code == 400
    assert "X-MinLimit-Remaining" in replay.headers  # evaluated after rate limiting (xero.md §4.3)


def test_payments_drive_amounts_and_status(api, admin):
    invoice = api.request("PUT", "Invoices", json=_invoice(_contact_id(admin))).json()["Invoices"][0]
    payment = {
        "Invoice": {"InvoiceID": invoice["InvoiceID"]},
        "Account": {"Code": "090"},
        "Date": "2025-01-05",
        "Amount": 10,
    }
    partial = api.request("PUT", "Payments", json={"Payments": [payment]}).json()["Payments"][0]
    after_partial = api.request("GET", f"Invoices/{invoice['InvoiceID']}").json()["Invoices"][0]
    assert (after_partial["Status"], after_partial["AmountPaid"], after_partial["AmountDue"]) == (
        "AUTHORISED",
        10.0,
        14.15,
    )
    rest = api.request("POST", "Payments", json={**payment, "Amount": 14.15})
    assert rest.status_code == 200
    paid = api.request("GET", f"Invoices/{invoice['InvoiceID']}").json()["Invoices"][0]
    assert (paid["Status"], paid["AmountDue"], len(paid["Payments"])) == ("PAID", 0.0, 2)
    too_much = api.request("PUT", "Payments", params={"summarizeErrors": "false"}, json=payment).json()["Payments"][0]
    assert too_much["StatusAttributeString"] == "ERROR"
    deleted = api.request("POST", f"Payments/{partial['PaymentID']}", json={"Status": "DELETED"}).json()["Payments"][0]
    assert deleted["Status"] == "DELETED"
    reopened = api.request("GET", f"Invoices/{invoice['InvoiceID']}").json()["Invoices"][0]
    assert (reopened["Status"], reopened["AmountDue"]) == ("AUTHORISED", 10.0)


def test_contact_names_are_unique_among_active_contacts(api, admin):
    name = next(c["Name"] for c in admin.call("GET", "/xero/contacts") if c["ContactStatus"] == "ACTIVE")
    clash = api.request(
        "PUT",
        "Contacts",
        params={"summarizeErrors": "false"},
        json={"Contacts": [{"Name": name}, {"Name": "Brand New Ltd", "EmailAddress": "a@b.co"}]},
    )
    first, second = clash.json()["Contacts"]
    assert "must be unique across all active contacts" in first["ValidationErrors"][0]["Message"]
    assert first["HasValidationErrors"] is True and second["StatusAttributeString"] == "OK"
    archived = api.request("POST", f"Contacts/{second['ContactID']}", json={"ContactStatus": "ARCHIVED"}).json()[
        "Contacts"
    ][0]
    assert archived["ContactStatus"] == "ARCHIVED"
