"""Every Xero and Intercom endpoint the sandbox serves answers in the shape of the vendor's official OpenAPI
description (copies in specs/, sources in specs/README.md), checked with openapi-core on a sample of real answers.

A deviation from a description is a failing test. Where the real Intercom API itself departs from its description,
the sandbox follows the API and `intercom_openapi` relaxes the description for exactly those fields, each listed in
sync_pipelines/sandbox/intercom/DEVIATIONS.md.
"""

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import requests
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.exceptions import OpenAPIError

from sync_pipelines.sandbox.intercom.api import Api
from sync_pipelines.sandbox.store import COLLECTIONS
from sync_pipelines.sandbox.xero.accounting import HISTORY_COLLECTIONS
from sync_pipelines.sandbox.xero.app import GROUPS, LIST_PARAMETERS, TRACKING
from sync_pipelines_tests.sandbox.conftest import XeroApi
from sync_pipelines_tests.sandbox.intercom.conftest import IntercomApi

SPECS = Path(__file__).parent / "specs"
XERO_API = "https://api.xero.com/api.xro/2.0"
XERO_IDENTITY = "https://api.xero.com"
INTERCOM_API = "https://api.intercom.io"


def _load(name: str) -> dict:
    with (SPECS / name).open() as file:
        # libyaml's loader reads the 1.3 MB Intercom description in well under a second.
        return yaml.load(file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _nullable_refs(node: object, schemas: dict, inlined: frozenset[str] = frozenset()) -> object:
    """{"$ref": X, "nullable": true} as the descriptions mean it (e.g. Intercom's conversation.ai_agent, null in its
    own examples): OpenAPI 3.0 ignores keywords beside a $ref, so the referenced schema is inlined, made nullable
    (`inlined` stops a schema that refers to itself)."""
    if isinstance(node, list):
        return [_nullable_refs(item, schemas, inlined) for item in node]
    if not isinstance(node, dict):
        return node
    name = node.get("$ref", "").rsplit("/", 1)[-1]
    if node.get("nullable") is True and name in schemas and name not in inlined:
        return _nullable_refs({**schemas[name], "nullable": True}, schemas, inlined | {name})
    return {key: _nullable_refs(value, schemas, inlined) for key, value in node.items()}


def _openapi(spec: dict) -> OpenAPI:
    spec = _nullable_refs(spec, spec["components"]["schemas"])
    # The descriptions themselves fail strict spec validation (e.g. an undeclared path parameter in Intercom's
    # /export/reporting_data/{job_identifier}); only the responses are checked here.
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


@cache
def xero_openapi() -> tuple[OpenAPI, OpenAPI]:
    identity = _load("xero-identity.yaml")
    # Connection dates carry no zone ("2019-12-07T18:46:19.5165400" in the description's own example, xero.md
    # §1.6), which format date-time does not allow: the example, which is what Xero sends, wins.
    for name in ("createdDateUtc", "updatedDateUtc"):
        del identity["components"]["schemas"]["Connection"]["properties"][name]["format"]
    return _openapi(_load("xero_accounting.yaml")), _openapi(identity)


@cache
def intercom_openapi() -> OpenAPI:
    """The 2.16 description, relaxed only where the real API answers otherwise (DEVIATIONS.md)."""
    spec = _load("api.intercom.io.yaml")
    schemas, paths = spec["components"]["schemas"], spec["paths"]
    # 1. Statistics of what has not happened yet (a conversation never closed) are null.
    for name, prop in schemas["conversation_statistics"]["properties"].items():
        if name != "type":
            prop["nullable"] = True
    # 2. Page-numbered company lists link the next page by URL, the description's own pages_link shape.
    schemas["company_list"]["properties"]["pages"] = {"$ref": "#/components/schemas/pages_link"}
    # 3. An unknown contact is a 404 error.list, as on every /contacts/{contact_id}/... path.
    paths["/contacts/{contact_id}"]["get"]["responses"]["404"] = paths["/contacts/{contact_id}/tags"]["get"][
        "responses"
    ]["404"]
    return _openapi(spec)


@dataclass
class SpecRequest:
    """What openapi-core needs to find the operation: the description's server and path template."""

    host_url: str
    path: str
    path_pattern: str
    method: str
    body: bytes | None = None
    content_type: str = "application/json"
    parameters: RequestParameters = field(default_factory=RequestParameters)


@dataclass
class SpecResponse:
    status_code: int
    content_type: str
    headers: dict[str, str]
    data: bytes


def _template(path: str) -> str:
    """A path template with its parameter names erased, so the sandbox's and the description's compare."""
    return re.sub(r"\{[^}]*\}", "{}", path)


@dataclass
class Contract:
    """One vendor's descriptions and the (method, path template) pairs whose answers have been checked."""

    openapi: OpenAPI
    server: str
    checked: set[tuple[str, str]] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def check(self, template: str, response: requests.Response, as_method: str | None = None) -> requests.Response:
        """Validate one real answer against the operation at `template` (as_method: the description's method, for
        a call the sandbox also takes by another one)."""
        method = (as_method or response.request.method).lower()
        server = urlsplit(self.server)
        path = server.path + "/" + template.lstrip("/")
        request = SpecRequest(f"{server.scheme}://{server.netloc}", path, path, method)
        answer = SpecResponse(
            response.status_code,
            response.headers.get("content-type", "application/json"),
            dict(response.headers),
            response.content,
        )
        try:
            self.openapi.validate_response(request, answer)
        except OpenAPIError as exc:  # every kind of mismatch (status, content type, schema) is reported
            cause = exc.__cause__
            errors = getattr(cause, "schema_errors", [])
            details = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors] or [str(cause or exc)]
            self.problems.append(f"{method.upper()} {template} {response.status_code}: {sorted(set(details))[:5]}")
        self.checked.add((response.request.method, _template(template)))
        return response


def xero_endpoints() -> set[tuple[str, str]]:
    """What the sandbox serves (sandbox/xero/app.py routes): every collection, its records and history, groups and
    members, credit-note allocations, tracking categories and their options."""
    served = {("GET", "/connections"), ("DELETE", "/connections/{}")}
    for name in COLLECTIONS:
        served |= {("GET", f"/{name}"), ("PUT", f"/{name}"), ("POST", f"/{name}")}
        served |= {("GET", f"/{name}/{{}}"), ("POST", f"/{name}/{{}}")}
    for name in HISTORY_COLLECTIONS:
        served |= {(method, f"/{name}/{{}}/History") for method in ("GET", "PUT", "POST")}
    served |= {("GET", f"/{GROUPS}"), ("PUT", f"/{GROUPS}"), ("GET", f"/{GROUPS}/{{}}"), ("POST", f"/{GROUPS}/{{}}")}
    served |= {("PUT", f"/{GROUPS}/{{}}/Contacts"), ("DELETE", f"/{GROUPS}/{{}}/Contacts")}
    served |= {("PUT", "/CreditNotes/{}/Allocations")}
    served |= {("GET", f"/{TRACKING}"), ("PUT", f"/{TRACKING}"), ("GET", f"/{TRACKING}/{{}}")}
    served |= {("PUT", f"/{TRACKING}/{{}}/Options")}
    return served | {("DELETE", f"/{GROUPS}/{{}}/Contacts/{{}}")}


def intercom_endpoints(sandbox) -> set[tuple[str, str]]:
    """Every route of the Intercom sandbox's API, as Starlette serves it."""
    return {
        (method, _template(route.path))
        for route in Api(sandbox.runtime.intercom).routes()
        for method in route.methods
        if method != "HEAD"
    }


def test_xero_answers_match_the_xero_openapi_description(sandbox, admin):
    """The Accounting API and connections, 400 answers included. The OAuth 2.0 authorize, token and revocation
    endpoints are RFC 6749's, which no OpenAPI description covers."""
    accounting, identity = xero_openapi()
    xero, connections = Contract(accounting, XERO_API), Contract(identity, XERO_IDENTITY)
    admin.limits(minute_limit=1000)  # the walk makes more calls than Xero's 60 a minute (xero.md §5)
    api = XeroApi(sandbox)
    call = api.request
    contact = next(c for c in admin.call("GET", "/xero/contacts") if c["ContactStatus"] == "ACTIVE")
    contact_id = contact["ContactID"]
    invoice_body = {
        "Type": "ACCREC",
        "Contact": {"ContactID": contact_id},
        "Status": "AUTHORISED",
        "LineItems": [{"Description": "Work", "Quantity": 2, "UnitAmount": 10.5, "AccountCode": "200"}],
    }

    item = {
        "Code": "CHECKED",
        "Name": "Checked item",
        "Description": "Sold as checked",
        "PurchaseDescription": "Bought as checked",
        "SalesDetails": {"UnitPrice": 12, "AccountCode": "200", "TaxType": "OUTPUT"},
        "PurchaseDetails": {"UnitPrice": 4, "COGSAccountCode": "310"},
        "InventoryAssetAccountCode": "630",
    }
    xero.check("/Items", call("PUT", "Items", json={"Items": [item]}))
    bill = {**invoice_body, "Type": "ACCPAY", "LineItems": [{"ItemCode": "CHECKED", "Quantity": 5}]}
    xero.check("/Invoices", call("PUT", "Invoices", json=bill))
    region = xero.check("/TrackingCategories", call("PUT", "TrackingCategories", json={"Name": "Region"})).json()
    region_id = region["TrackingCategories"][0]["TrackingCategoryID"]
    options = f"TrackingCategories/{region_id}/Options"
    xero.check("/TrackingCategories/{TrackingCategoryID}/Options", call("PUT", options, json={"Name": "North"}))
    xero.check("/TrackingCategories/{TrackingCategoryID}/Options", call("PUT", options, json={"Name": "north"}))  # 400
    credit_line = {"ItemCode": "CHECKED", "Quantity": 1, "Tracking": [{"Name": "Region", "Option": "North"}]}
    credit_note_body = {**invoice_body, "Type": "ACCRECCREDIT", "LineItems": [credit_line]}
    credit_note = xero.check("/CreditNotes", call("PUT", "CreditNotes", json=credit_note_body)).json()
    credit_note_id = credit_note["CreditNotes"][0]["CreditNoteID"]

    for name in COLLECTIONS:
        if "page" in LIST_PARAMETERS[name]:
            listed = xero.check(f"/{name}", call("GET", name, params={"page": 1, "pageSize": 20})).json()[name]
            xero.check(f"/{name}", call("GET", name))  # unpaged: summary form
        else:
            listed = xero.check(f"/{name}", call("GET", name, params={"order": "UpdatedDateUTC DESC"})).json()[name]
        record_id = listed[0][COLLECTIONS[name][1]]
        xero.check(f"/{name}/{{{COLLECTIONS[name][1]}}}", call("GET", f"{name}/{record_id}"))
        history = f"/{name}/{{{COLLECTIONS[name][1]}}}/History"
        xero.check(history, call("GET", f"{name}/{record_id}/History"))
        xero.check(history, call("PUT", f"{name}/{record_id}/History", json={"HistoryRecords": [{"Details": "n"}]}))
        xero.check(history, call("POST", f"{name}/{record_id}/History", json={"Details": "n"}), as_method="put")
    xero.check("/Contacts", call("GET", "Contacts", params={"page": 1, "summaryOnly": "true", "searchTerm": "a"}))
    xero.check("/Invoices", call("GET", "Invoices", params={"page": 1, "createdByMyApp": "true"}))
    xero.check("/Contacts/{ContactNumber}", call("GET", f"Contacts/{contact.get('ContactNumber') or contact_id}"))

    invoice = xero.check("/Invoices", call("PUT", "Invoices", json=invoice_body)).json()["Invoices"][0]
    xero.check("/Invoices", call("POST", "Invoices", params={"summarizeErrors": "false"}, json=[{"Type": "ACCREC"}]))
    xero.check("/Invoices", call("PUT", "Invoices", json={"Invoices": [{"Type": "ACCREC"}]}))  # 400 Validation
    xero.check("/Invoices/{InvoiceID}", call("POST", f"Invoices/{invoice['InvoiceID']}", json={"Reference": "r"}))
    made = xero.check("/Contacts", call("PUT", "Contacts", json={"Name": "OpenAPI Check Ltd"})).json()["Contacts"][0]
    xero.check("/Contacts", call("POST", "Contacts", json={"Contacts": [{"Name": "OpenAPI Check Two"}]}))
    xero.check("/Contacts/{ContactID}", call("POST", f"Contacts/{made['ContactID']}", json={"FirstName": "Ada"}))
    bank = {"Type": "SPEND", "BankAccount": {"Code": "090"}, "LineItems": [{"Description": "Fee", "UnitAmount": 5}]}
    txn = xero.check("/BankTransactions", call("PUT", "BankTransactions", json=bank)).json()["BankTransactions"][0]
    xero.check("/BankTransactions", call("POST", "BankTransactions", json={**bank, "Reference": "again"}))
    txn_path = f"BankTransactions/{txn['BankTransactionID']}"
    xero.check("/BankTransactions/{BankTransactionID}", call("POST", txn_path, json={"Reference": "changed"}))
    payment = {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"}, "Amount": 5}
    paid = xero.check("/Payments", call("PUT", "Payments", json={"Payments": [payment]})).json()["Payments"][0]
    xero.check("/Payments", call("POST", "Payments", json=payment))
    xero.check("/Payments/{PaymentID}", call("POST", f"Payments/{paid['PaymentID']}", json={"Status": "DELETED"}))

    xero.check("/Items", call("POST", "Items", json={"Items": [{"Code": "CHECKED", "Description": "Now described"}]}))
    xero.check("/Items", call("PUT", "Items", json=item))  # 400: the code is taken
    xero.check("/Items/{ItemID}", call("POST", "Items/CHECKED", json={"Name": "Renamed item"}))
    xero.check("/Items/{ItemID}", call("GET", "Items/CHECKED"))
    xero.check(
        "/CreditNotes", call("POST", "CreditNotes", json={"CreditNotes": [{**credit_note_body, "Reference": "r"}]})
    )
    xero.check("/CreditNotes/{CreditNoteID}", call("POST", f"CreditNotes/{credit_note_id}", json={"Reference": "n"}))
    allocation = {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Amount": 1, "Date": "2025-03-01"}
    allocations = f"CreditNotes/{credit_note_id}/Allocations"
    xero.check("/CreditNotes/{CreditNoteID}/Allocations", call("PUT", allocations, json={"Allocations": [allocation]}))
    xero.check("/CreditNotes/{CreditNoteID}/Allocations", call("PUT", allocations, json={**allocation, "Amount": 1e6}))
    xero.check("/TrackingCategories", call("GET", "TrackingCategories", params={"includeArchived": "true"}))
    xero.check("/TrackingCategories/{TrackingCategoryID}", call("GET", f"TrackingCategories/{region_id}"))

    group = xero.check("/ContactGroups", call("PUT", "ContactGroups", json={"Name": "Checked"})).json()
    group_id = group["ContactGroups"][0]["ContactGroupID"]
    xero.check("/ContactGroups", call("GET", "ContactGroups"))
    members = f"ContactGroups/{group_id}/Contacts"
    xero.check("/ContactGroups/{ContactGroupID}/Contacts", call("PUT", members, json={"ContactID": contact_id}))
    xero.check("/ContactGroups/{ContactGroupID}", call("GET", f"ContactGroups/{group_id}"))
    xero.check("/ContactGroups/{ContactGroupID}", call("POST", f"ContactGroups/{group_id}", json={"Name": "Renamed"}))
    xero.check("/ContactGroups/{ContactGroupID}/Contacts/{ContactID}", call("DELETE", f"{members}/{contact_id}"))
    xero.check("/ContactGroups/{ContactGroupID}/Contacts", call("DELETE", members))

    headers = {"Authorization": api.headers()["Authorization"]}
    listed = connections.check("/Connections", requests.get(f"{sandbox.url}/xero/api/connections", headers=headers))
    gone = requests.delete(f"{sandbox.url}/xero/api/connections/{listed.json()[0]['id']}", headers=headers)
    connections.check("/Connections/{id}", gone)

    problems = xero.problems + connections.problems
    assert not problems, "\n".join(problems)
    checked = {(method, path.replace("/Connections", "/connections")) for method, path in connections.checked}
    assert xero.checked | checked == xero_endpoints()


def test_intercom_answers_match_the_intercom_openapi_description(sandbox, admin):
    """Including the error answers a client handles: 401, 404 for an unknown record, 400 for a bad parameter."""
    intercom = Contract(intercom_openapi(), INTERCOM_API)
    ic = IntercomApi(sandbox)
    call, check = ic.request, intercom.check
    contacts = check("/contacts", call("GET", "/contacts", params={"per_page": 50})).json()["data"]
    lead = next(c for c in contacts if c["role"] == "lead")
    contact_id = next(c["id"] for c in contacts if c["role"] == "user")
    company = admin.intercom_records("companies")[0]
    tag_id = admin.intercom_records("tags")[0]["id"]
    segment_id = admin.intercom_records("segments")[0]["id"]
    conversation_id = admin.intercom_records("conversations")[0]["id"]
    admin_id = admin.intercom_records("admins")[0]["id"]

    check("/me", call("GET", "/me"))
    check("/admins", call("GET", "/admins"))
    check("/admins/{admin_id}", call("GET", f"/admins/{admin_id}"))
    check("/contacts/{contact_id}", call("GET", f"/contacts/{lead['id']}"))
    check("/contacts/{contact_id}", call("GET", "/contacts/000000000000000000000000"))  # 404
    check("/contacts", call("GET", "/contacts", headers={"Authorization": "Bearer wrong"}))  # 401
    search = {"query": {"field": "role", "operator": "=", "value": "lead"}, "pagination": {"per_page": 5}}
    check("/contacts/search", call("POST", "/contacts/search", json=search))
    external_id = next(c["external_id"] for c in contacts if c["external_id"])
    check("/contacts/find_by_external_id/{external_id}", call("GET", f"/contacts/find_by_external_id/{external_id}"))
    created = check("/contacts", call("POST", "/contacts", json={"role": "lead", "name": "Checked"})).json()
    check("/contacts/{contact_id}", call("PUT", f"/contacts/{created['id']}", json={"name": "Checked Again"}))
    check("/contacts/{contact_id}/archive", call("POST", f"/contacts/{created['id']}/archive"))
    check("/contacts/{contact_id}/unarchive", call("POST", f"/contacts/{created['id']}/unarchive"))
    tags = f"/contacts/{contact_id}/tags"
    check("/contacts/{contact_id}/tags", call("POST", tags, json={"id": tag_id}))
    check("/contacts/{contact_id}/tags", call("GET", tags))
    check("/contacts/{contact_id}/tags/{tag_id}", call("DELETE", f"{tags}/{tag_id}"))
    companies = f"/contacts/{contact_id}/companies"
    check("/contacts/{contact_id}/companies", call("POST", companies, json={"id": company["id"]}))
    check("/contacts/{contact_id}/companies", call("GET", companies))
    check("/contacts/{contact_id}/companies/{company_id}", call("DELETE", f"{companies}/{company['id']}"))
    check("/contacts/{contact_id}/segments", call("GET", f"/contacts/{contact_id}/segments"))
    check("/contacts/{contact_id}", call("DELETE", f"/contacts/{created['id']}"))

    check("/companies", call("GET", "/companies", params={"per_page": 5}))
    check("/companies", call("GET", "/companies", params={"company_id": company["company_id"]}))
    check("/companies", call("GET", "/companies", params={"company_id": "no such company"}))  # 404
    check("/companies/list", call("POST", "/companies/list", params={"per_page": 5}))
    check("/companies/scroll", call("GET", "/companies/scroll"))
    check("/companies/{company_id}", call("GET", f"/companies/{company['id']}"))
    check("/companies/{company_id}/contacts", call("GET", f"/companies/{company['id']}/contacts"))
    check("/companies/{company_id}/segments", call("GET", f"/companies/{company['id']}/segments"))
    upserted = check("/companies", call("POST", "/companies", json={"company_id": "checked", "name": "Checked"}))
    check("/companies/{company_id}", call("PUT", f"/companies/{upserted.json()['id']}", json={"industry": "Tests"}))
    check("/companies/{company_id}", call("DELETE", f"/companies/{upserted.json()['id']}"))

    check("/tags", call("GET", "/tags"))
    new_tag = check("/tags", call("POST", "/tags", json={"name": "Checked"})).json()
    check("/tags/{tag_id}", call("GET", f"/tags/{new_tag['id']}"))
    check("/tags/{tag_id}", call("DELETE", f"/tags/{new_tag['id']}"))
    check("/segments", call("GET", "/segments", params={"include_count": "true"}))
    check("/segments/{segment_id}", call("GET", f"/segments/{segment_id}"))
    check("/conversations", call("GET", "/conversations", params={"per_page": 20}))
    closed = {"query": {"field": "state", "operator": "=", "value": "closed"}, "pagination": {"per_page": 5}}
    check("/conversations/search", call("POST", "/conversations/search", json=closed))
    check("/conversations/{conversation_id}", call("GET", f"/conversations/{conversation_id}"))

    assert not intercom.problems, "\n".join(intercom.problems)
    assert intercom.checked == intercom_endpoints(sandbox)
