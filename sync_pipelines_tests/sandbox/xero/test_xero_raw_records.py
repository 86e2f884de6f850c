"""/_admin/xero/raw: records a broken source would hold are stored as given and paged out verbatim."""

import json

import requests


def test_raw_invoices_are_paged_out_verbatim_junk_and_all(api, admin):
    junk = [
        '{"InvoiceID":"not-a-uuid","Type":"ACCREC","Total":NaN,"UpdatedDateUTC":"/Date(4102444800000+0000)/"}',
        json.dumps({"Type": "ACCREC", "Contact": [1, 2], "InvoiceNumber": "x" * 200_000, "Date": "3170843-01-01"}),
    ]
    ids = admin.post("/xero/raw/invoices", {"records": junk})["ids"]

    response = api.request("GET", "Invoices", params={"where": 'Type=="ACCREC"', "page": 1, "pageSize": 1000})
    pages = api.all_pages("Invoices", where='Type=="ACCREC"')
    assert len(ids) == 2 and '{"InvoiceID":"not-a-uuid","Type":"ACCREC","Total":NaN,' in response.text
    served = [r for r in pages if r.get("InvoiceID") == "not-a-uuid" or "InvoiceID" not in r]
    assert [json.dumps(r) for r in served] == [json.dumps(json.loads(text)) for text in reversed(junk)]
    # Found again by If-Modified-Since at its own UpdatedDateUTC (2100), the id-less one at the time it was added.
    later = api.all_pages("Invoices", headers=api.headers(**{"If-Modified-Since": "2099-01-01T00:00:00"}))
    assert [r["InvoiceID"] for r in later] == ["not-a-uuid"]


def test_a_raw_record_is_a_json_object(admin):
    for records in (["[1, 2]"], ["{}"], [{"InvoiceID": "x"}], ["{not json"]):
        response = requests.post(f"{admin.url}/xero/raw/invoices", json={"records": records}, timeout=10)
        assert response.status_code == 400, (records, response.text)
    assert requests.post(f"{admin.url}/xero/raw/quotes", json={"records": []}, timeout=10).status_code == 404
