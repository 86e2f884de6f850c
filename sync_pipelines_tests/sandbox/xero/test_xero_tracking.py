"""Tracking categories, their options and the Tracking on line items, through the sandbox's Accounting API."""

import requests

NOT_FOUND = "The resource you're looking for cannot be found"


def _messages(response: requests.Response) -> list[str]:
    return [error["Message"] for element in response.json()["Elements"] for error in element["ValidationErrors"]]


def _category(api, name: str, *options: str) -> dict:
    created = api.request("PUT", "TrackingCategories", json={"Name": name})
    assert created.status_code == 200, created.text
    category = created.json()["TrackingCategories"][0]
    if options:
        path = f"TrackingCategories/{category['TrackingCategoryID']}/Options"
        added = api.request("PUT", path, json={"Options": [{"Name": option} for option in options]})
        assert added.status_code == 200, added.text
    return api.request("GET", f"TrackingCategories/{category['TrackingCategoryID']}").json()["TrackingCategories"][0]


def _contact_id(admin) -> str:
    return next(c["ContactID"] for c in admin.call("GET", "/xero/contacts") if c["ContactStatus"] == "ACTIVE")


def test_categories_and_options_are_created_and_listed(api):
    created = api.request("PUT", "TrackingCategories", json={"Name": "Region"}).json()["TrackingCategories"][0]
    assert (created["Name"], created["Status"], created["Options"]) == ("Region", "ACTIVE", [])
    path = f"TrackingCategories/{created['TrackingCategoryID']}/Options"
    north = api.request("PUT", path, json={"Name": "North"}).json()["Options"][0]
    assert (north["Name"], north["Status"], north["IsActive"], north["StatusAttributeString"]) == (
        "North",
        "ACTIVE",
        True,
        "OK",
    )
    api.request("PUT", path, json={"Options": [{"Name": "East"}]})
    _category(api, "Department", "Sales")

    listed = api.request("GET", "TrackingCategories", params={"includeArchived": "true"}).json()
    assert "pagination" not in listed
    assert [(c["Name"], [o["Name"] for o in c["Options"]]) for c in listed["TrackingCategories"]] == [
        ("Department", ["Sales"]),
        ("Region", ["East", "North"]),
    ]
    one = api.request("GET", f"TrackingCategories/{created['TrackingCategoryID']}").json()["TrackingCategories"]
    assert [o["TrackingOptionID"] for o in one[0]["Options"] if o["Name"] == "North"] == [north["TrackingOptionID"]]
    unknown = api.request("GET", "TrackingCategories/00000000-0000-0000-0000-000000000000")
    assert (unknown.status_code, unknown.text) == (404, NOT_FOUND)
    options_of_unknown = api.request("PUT", "TrackingCategories/00000000-0000-0000-0000-000000000000/Options", json={})
    assert options_of_unknown.status_code == 404


def test_option_names_are_unique_and_at_most_two_categories_are_active(api):
    region = _category(api, "Region", "North")
    duplicate = api.request("PUT", f"TrackingCategories/{region['TrackingCategoryID']}/Options", json={"Name": "north"})
    assert duplicate.status_code == 400 and duplicate.json()["Type"] == "ValidationException"
    assert _messages(duplicate) == ["For each specified tracking option the name must be unique."]
    same_name = api.request("PUT", "TrackingCategories", json={"Name": "REGION"})
    assert _messages(same_name) == ["A tracking category named 'REGION' already exists"]

    _category(api, "Department")
    third = api.request("PUT", "TrackingCategories", json={"Name": "Project"})
    assert third.status_code == 400
    assert _messages(third) == ["An organisation can have at most 2 active tracking categories"]
    assert len(api.request("GET", "TrackingCategories").json()["TrackingCategories"]) == 2


def test_line_tracking_is_stored_with_ids_and_unknown_options_are_refused(api, admin):
    region = _category(api, "Region", "North", "South")
    department = _category(api, "Department", "Sales")
    north = next(o for o in region["Options"] if o["Name"] == "North")
    line = {
        "Description": "Tracked work",
        "Quantity": 1,
        "UnitAmount": 10,
        "Tracking": [{"Name": "region", "Option": "NORTH"}, {"Name": "Department", "Option": "Sales"}],
    }
    body = {"Type": "ACCREC", "Contact": {"ContactID": _contact_id(admin)}, "LineItems": [line]}
    created = api.request("PUT", "Invoices", json=body)
    assert created.status_code == 200, created.text
    invoice_id = created.json()["Invoices"][0]["InvoiceID"]
    stored = api.request("GET", f"Invoices/{invoice_id}").json()["Invoices"][0]["LineItems"][0]["Tracking"]
    assert stored == [
        {
            "TrackingCategoryID": region["TrackingCategoryID"],
            "TrackingOptionID": north["TrackingOptionID"],
            "Name": "Region",
            "Option": "North",
        },
        {
            "TrackingCategoryID": department["TrackingCategoryID"],
            "TrackingOptionID": department["Options"][0]["TrackingOptionID"],
            "Name": "Department",
            "Option": "Sales",
        },
    ]

    by_ids = {"TrackingCategoryID": region["TrackingCategoryID"], "TrackingOptionID": north["TrackingOptionID"]}
    note = {**body, "Type": "ACCRECCREDIT", "LineItems": [{**line, "Tracking": [by_ids]}]}
    credit = api.request("PUT", "CreditNotes", json=note).json()["CreditNotes"][0]
    assert credit["LineItems"][0]["Tracking"][0]["Option"] == "North"

    unknown = {**line, "Tracking": [{"Name": "Region", "Option": "West"}]}
    refused = api.request("PUT", "Invoices", json={**body, "LineItems": [unknown]})
    assert refused.status_code == 400
    assert _messages(refused) == ["The tracking option 'West' does not exist in tracking category 'Region'"]
    no_category = {**line, "Tracking": [{"Name": "Colour", "Option": "Red"}]}
    assert _messages(api.request("PUT", "Invoices", json={**body, "LineItems": [no_category]})) == [
        "The tracking category 'Colour' does not exist or is not active"
    ]
    twice = {**line, "Tracking": [{"Name": "Region", "Option": "North"}, {"Name": "Region", "Option": "South"}]}
    assert _messages(api.request("PUT", "Invoices", json={**body, "LineItems": [twice]})) == [
        "A line item can use the tracking category 'Region' only once"
    ]
