"""XeroContact: how a Contacts element becomes a row, and which elements the contract refuses, and why."""

import pandas as pd
import pytest

from sync_pipelines.vendors.xero.contracts.contact import XeroContact, flatten_contact
from sync_pipelines_tests.lib.records import contact, judge, rows

ID = "bd2270c3-8706-4c11-9cfb-000b551c3f51"


def test_a_full_contact_flattens_to_one_row_with_phone_and_fallback_address():
    valid, reasons = judge(XeroContact, flatten_contact, [contact(ID, ContactNumber="", TaxNumber="12-3456789")])
    assert reasons == []
    assert rows(valid) == [
        {
            "contact_id": ID,
            "contact_number": None,
            "status": "ACTIVE",
            "name": "Ridgeway University",
            "first_name": "Emma",
            "last_name": "Stone",
            "email": "emma.stone@ridgeway.example",
            "phone": "+1 415 555-0100",
            # The STREET address is listed but blank (as Xero lists it), so the POBOX one is used.
            "address_line1": "PO Box 8721",
            "city": "Oaktown",
            "region": "CA",
            "postal_code": "94608",
            "country": "United States",
            "tax_number": "12-3456789",
            "company_number": None,
            "website": None,
            "default_currency": None,
            "is_customer": True,
            "is_supplier": False,
            "is_organisation": True,
            "updated_at": pd.Timestamp("2025-01-15T09:30:00Z"),
        }
    ]


@pytest.mark.parametrize(
    ("phones", "expected"),
    [
        # DEFAULT without a number: the MOBILE one, with only the parts it has.
        (
            [
                {"PhoneType": "DEFAULT", "PhoneNumber": "", "PhoneAreaCode": "415", "PhoneCountryCode": "1"},
                {"PhoneType": "MOBILE", "PhoneNumber": "021 555 0199", "PhoneAreaCode": "", "PhoneCountryCode": "64"},
            ],
            "+64 021 555 0199",
        ),
        (
            [{"PhoneType": "DEFAULT", "PhoneNumber": "555-0100", "PhoneAreaCode": "", "PhoneCountryCode": ""}],
            "555-0100",
        ),
        ([{"PhoneType": "FAX", "PhoneNumber": "555-0101", "PhoneAreaCode": "415", "PhoneCountryCode": "1"}], None),
        ([], None),
    ],
)
def test_phone_is_the_default_else_the_mobile_number(phones, expected):
    valid, _ = judge(XeroContact, flatten_contact, [contact(ID, Phones=phones)])
    assert rows(valid)[0]["phone"] == expected


def test_street_address_wins_over_po_box_when_it_has_any_part():
    street = {"AddressType": "STREET", "AddressLine1": "1 Main St", "City": "Springfield", "Country": "USA"}
    record = contact(ID, Addresses=[contact(ID)["Addresses"][1], street])
    valid, _ = judge(XeroContact, flatten_contact, [record])
    address = rows(valid[["address_line1", "city", "region", "postal_code", "country"]])
    assert address == [
        {"address_line1": "1 Main St", "city": "Springfield", "region": None, "postal_code": None, "country": "USA"}
    ]


@pytest.mark.parametrize(
    ("name", "first", "last", "is_organisation"),
    [
        ("Emma Stone", "Emma", "Stone", False),
        ("emma  STONE", "Emma", "Stone", False),  # case and spacing do not make a company
        ("Madonna", "Madonna", "", False),
        ("Stone Consulting", "Emma", "Stone", True),
        ("Emma Stone", "", "", True),  # no person to compare with: Xero's Name is all we know
    ],
)
def test_an_organisation_is_a_name_that_is_not_just_the_persons_name(name, first, last, is_organisation):
    valid, _ = judge(XeroContact, flatten_contact, [contact(ID, Name=name, FirstName=first, LastName=last)])
    assert bool(valid["is_organisation"].iloc[0]) is is_organisation


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ContactID": None}, "contact_id: missing"),
        ({"ContactID": "C-42"}, "contact_id: str_matches"),
        ({"ContactStatus": "DELETED"}, "status: isin"),
        ({"Name": "  "}, "name: missing"),
        ({"EmailAddress": "emma at ridgeway"}, "email: str_matches"),
        ({"DefaultCurrency": "usd"}, "default_currency: str_matches"),
        ({"IsCustomer": "yes"}, "is_customer: 'yes' is not a valid"),
        ({"UpdatedDateUTC": "/Date(soon)/"}, "updated_at: '/Date(soon)/' is not a valid"),
    ],
)
def test_a_broken_contact_is_refused_with_a_reason_naming_the_field(change, reason):
    valid, reasons = judge(XeroContact, flatten_contact, [contact(ID, **change), contact(ID[:-1] + "0")])
    assert len(valid) == 1
    assert len(reasons) == 1 and reason in reasons[0], reasons


def test_a_summary_shaped_contact_is_refused_rather_than_identified_without_its_details():
    # xero.md §2.5: unpaged lists return a lighter shape, without IsCustomer/IsSupplier, addresses or phones.
    summary = {k: v for k, v in contact(ID).items() if k not in ("Addresses", "Phones", "IsCustomer", "IsSupplier")}
    _, reasons = judge(XeroContact, flatten_contact, [summary])
    assert reasons == ["is_customer: missing; is_supplier: missing"]
