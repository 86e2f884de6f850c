"""Deterministic org data: the same seed and sizes always give identical rows.

A seeded Faker fills small pools (companies, people, streets, cities) once; records draw from them with one
random.Random(seed), which is what lets 50,000 accounts seed in about a second (Faker costs ~100 µs a call).
Timestamps are whole seconds laid out before a fixed anchor, with ties where a real org has them (rows
imported together share their stamps) and deliberately across every 2,000-row page boundary of the
`ORDER BY SystemModstamp, Id` order, which is where a strict `>` cursor loses rows (salesforce.md §3.1, §3.2).
"""

import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from faker import Faker

from sync_pipelines.sandbox.salesforce import ids
from sync_pipelines.sandbox.salesforce.records import derive_opportunity, price_line_item
from sync_pipelines.sandbox.salesforce.schema import LEAD_STATUSES, STAGES

ANCHOR_S = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
HISTORY_S = 365 * 86_400
PAGE_SIZE = 2000  # salesforce.md §3.1: the default REST batch
TIE_WIDTH = 6  # rows sharing one SystemModstamp around each page boundary
DELETED_SHARE = 0.02
IMPORTED_SHARE = 0.1  # rows created in the same second as the previous one (a data import)
AUTOMATION_SHARE = 0.15  # rows whose SystemModstamp moved after their LastModifiedDate (salesforce.md §3.2)
CONVERTED_SHARE = 0.1
LINE_ITEM_SHARE = 0.4
USERS = 5
PRODUCTS = 20


def org_id(org: int = 1) -> str:
    """The org-th org's OrganizationId."""
    return ids.make_id("00D", 1, ids.pod(org))


def api_user_id(org: int = 1) -> str:
    """The user every API session of the org-th org runs as ("Sandbox Integration")."""
    return ids.make_id("005", 1, ids.pod(org))


ORG_ID = org_id()
_POOL = 60

_INDUSTRIES = ("Technology", "Finance", "Healthcare", "Manufacturing", "Retail", "Education", "Energy", None)
_ACCOUNT_TYPES = ("Customer - Direct", "Customer - Channel", "Prospect", "Partner", None)
_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other", None)
_RATINGS = ("Hot", "Warm", "Cold", None)
_TITLES = ("CEO", "CFO", "Controller", "VP Sales", "Buyer", "Office Manager", "Engineer", None)
_DEPARTMENTS = ("Finance", "Sales", "Operations", "IT", "Procurement", None)
_COMPANY_KINDS = tuple(
    "Inc LLC Ltd Group Holdings Partners Labs Systems Solutions Co Industries Logistics Foods Media Consulting "
    "Analytics Manufacturing Health".split()
)
_OPPORTUNITY_KINDS = ("New Business", "Renewal", "Expansion", "Upsell")
# In STAGES order: most opportunities are closed; none is seeded Paid, so every payment is a change a test makes.
_STAGE_WEIGHTS = (8, 6, 5, 5, 4, 4, 5, 4, 30, 25, 0)

Rows = dict[str, list[dict[str, Any]]]


def generate(seed: int, accounts: int, contacts_per_account: int, leads: int, opportunities: int, org: int = 1) -> Rows:
    """Every object's rows (stored values, schema.py) of the org-th org, keyed by object name; each org's from a
    random stream of its own (the first's from the seed itself, so its records stay as they were)."""
    stream = seed if org == 1 else f"{seed}/{org}"
    return _Generator(stream, org).run(accounts, contacts_per_account, leads, opportunities)


def _datetime(seconds: int) -> str:
    """The stored datetime form (schema.py), from epoch seconds: cheaper than datetime for 100k rows."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(seconds))


def _date(seconds: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


class _Generator:
    def __init__(self, seed: int | str, org: int):
        self.rng = rng = random.Random(seed)
        self.pod, self.api_user_id = ids.pod(org), api_user_id(org)
        self.domain = "sandbox-org.example" if org == 1 else f"sandbox-org{org}.example"  # usernames are global
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.first_names = [fake.first_name() for _ in range(_POOL * 2)]
        self.last_names = [fake.last_name() for _ in range(_POOL * 2)]
        self.streets = [fake.street_name() for _ in range(_POOL)]
        self.cities = [(fake.city(), fake.state_abbr(), fake.postcode()) for _ in range(_POOL)]
        self.phrases = [fake.catch_phrase() for _ in range(_POOL)]
        self.taken: Counter[str] = Counter()
        self.user_ids = [ids.make_id("005", n, self.pod) for n in range(1, USERS + 1)]
        self.choice = rng.choice

    def run(self, accounts: int, contacts_per_account: int, leads: int, opportunities: int) -> Rows:
        users = self.users()
        products = self.products()
        account_rows = self.accounts(accounts)
        contact_rows = self.contacts(account_rows, accounts * contacts_per_account)
        opportunity_rows = self.opportunities(account_rows, opportunities)
        line_items = self.line_items(opportunity_rows, products)
        lead_rows = self.leads(leads, account_rows, contact_rows, opportunity_rows)
        self.delete_some(account_rows, contact_rows, opportunity_rows, line_items, lead_rows)
        rows = {
            "User": users,
            "Product2": products,
            "Account": account_rows,
            "Contact": contact_rows,
            "Opportunity": opportunity_rows,
            "OpportunityLineItem": line_items,
            "Lead": lead_rows,
        }
        for object_rows in rows.values():
            _tie_page_boundaries(object_rows)
            for row in object_rows:
                for name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
                    row[name] = _datetime(row[name])
        return rows

    # -- shared parts -------------------------------------------------------------------------

    def base(self, prefix: str, count: int, history_s: int = HISTORY_S) -> list[dict[str, Any]]:
        """Rows with ids in creation order and audit stamps; about one in ten shares its predecessor's."""
        rng = self.rng
        created = sorted(ANCHOR_S - rng.randint(3_600, history_s) for _ in range(count))
        rows: list[dict[str, Any]] = []
        for number, created_s in enumerate(created, start=1):
            if rows and rng.random() < IMPORTED_SHARE:
                previous = rows[-1]
                stamps = (previous["CreatedDate"], previous["LastModifiedDate"], previous["SystemModstamp"])
            else:
                modified = created_s + rng.randint(0, min(30 * 86_400, ANCHOR_S - 1 - created_s))
                modstamp = modified
                if rng.random() < AUTOMATION_SHARE:
                    modstamp += rng.randint(1, max(1, ANCHOR_S - 1 - modified))
                stamps = (created_s, modified, min(modstamp, ANCHOR_S - 1))
            user = self.choice(self.user_ids)
            rows.append(
                {
                    "Id": ids.make_id(prefix, number, self.pod),
                    "IsDeleted": 0,
                    "CreatedDate": stamps[0],
                    "CreatedById": user,
                    "LastModifiedDate": stamps[1],
                    "LastModifiedById": user,
                    "SystemModstamp": stamps[2],
                }
            )
        return rows

    def unique_name(self, base: str) -> str:
        """Account and company names stay unique (Xero needs unique contact names), numbered when reused."""
        self.taken[base] += 1
        return base if self.taken[base] == 1 else f"{base} {self.taken[base]}"

    def company_name(self) -> str:
        """Faker's company patterns ("Lee LLC", "Lee-Ward Labs", "Lee, Ward and Cho") over the name pools."""
        rng, last = self.rng, self.last_names
        shape = rng.random()
        if shape < 0.05:
            base = f"{rng.choice(last)} {rng.choice(_COMPANY_KINDS)}"
        elif shape < 0.8:
            base = f"{rng.choice(last)}-{rng.choice(last)} {rng.choice(_COMPANY_KINDS)}"
        else:
            base = f"{rng.choice(last)}, {rng.choice(last)} and {rng.choice(last)}"
        return self.unique_name(base)

    def phone(self) -> str:
        rng = self.rng
        return f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"

    def address(self, prefix: str) -> dict[str, Any]:
        city, state, postcode = self.choice(self.cities)
        return {
            f"{prefix}Street": f"{self.rng.randint(1, 9999)} {self.choice(self.streets)}",
            f"{prefix}City": city,
            f"{prefix}State": state,
            f"{prefix}PostalCode": postcode,
            f"{prefix}Country": "United States",
        }

    def person(self, index: int, domain: str) -> dict[str, Any]:
        first, last = self.choice(self.first_names), self.choice(self.last_names)
        return {
            "FirstName": first,
            "LastName": last,
            "Name": f"{first} {last}",
            "Email": f"{first}.{last}{index}@{domain}".lower(),
            "Phone": self.phone(),
            "Title": self.choice(_TITLES),
        }

    # -- objects ------------------------------------------------------------------------------

    def users(self) -> list[dict[str, Any]]:
        rows = self.base("005", USERS)
        people = [("Sandbox", "Integration")] + [
            (self.choice(self.first_names), self.choice(self.last_names)) for _ in range(USERS - 1)
        ]
        for row, (first, last) in zip(rows, people, strict=True):
            handle = f"{first}.{last}".lower()
            row.update(
                Username=f"{handle}@{self.domain}",
                FirstName=first,
                LastName=last,
                Name=f"{first} {last}",
                Email=f"{handle}@{self.domain}",
                Alias=(first[0] + last)[:8].lower(),
                Title="Integration User" if row["Id"] == self.api_user_id else self.choice(_TITLES[:-1]),
                IsActive=1,
                CreatedById=self.api_user_id,
                LastModifiedById=self.api_user_id,
            )
        return rows

    def products(self) -> list[dict[str, Any]]:
        rows = self.base("01t", PRODUCTS)
        for number, row in enumerate(rows, start=1):
            row.update(
                Name=self.unique_name(" ".join(self.choice(self.phrases).split()[-2:]).title()),
                ProductCode=f"SKU-{number:04d}",
                Description=self.choice(self.phrases),
                Family=self.choice(("Hardware", "Software", "Services")),
                IsActive=1,
            )
        return rows

    def accounts(self, count: int) -> list[dict[str, Any]]:
        rng, choice = self.rng, self.choice
        rows = self.base("001", count)
        for row in rows:
            name = self.company_name()
            slug = "".join(char for char in name.lower() if char.isalnum())[:24]
            billing = self.address("Billing")
            shipping = {k.replace("Billing", "Shipping"): v for k, v in billing.items()}
            row.update(
                Name=name,
                AccountNumber=f"CD{rng.randint(100_000, 999_999)}",
                Type=choice(_ACCOUNT_TYPES),
                Industry=choice(_INDUSTRIES),
                AnnualRevenue=float(rng.randint(100, 500_000) * 1000) if rng.random() < 0.8 else None,
                NumberOfEmployees=rng.randint(1, 20_000),
                Website=f"https://www.{slug}.example",
                Phone=self.phone(),
                Description=choice(self.phrases) if rng.random() < 0.3 else None,
                OwnerId=choice(self.user_ids),
                Rating=choice(_RATINGS),
                AccountSource=choice(_SOURCES),
                **billing,
                **(shipping if rng.random() < 0.5 else self.address("Shipping")),
            )
            row["_domain"] = f"{slug}.example"
        for index in range(1, len(rows)):
            if rng.random() < 0.05:
                rows[index]["ParentId"] = rows[rng.randrange(index)]["Id"]  # an older account as the parent
        return rows

    def contacts(self, accounts: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
        rng, choice = self.rng, self.choice
        rows = self.base("003", count)
        for index, row in enumerate(rows):
            account = choice(accounts) if accounts and rng.random() < 0.97 else None
            domain = account["_domain"] if account else "example.com"
            row.update(self.person(index, domain))
            if account:
                mailing = {k.replace("Billing", "Mailing"): v for k, v in account.items() if k.startswith("Billing")}
            else:
                mailing = self.address("Mailing")
            row.update(
                MobilePhone=self.phone() if rng.random() < 0.5 else None,
                Department=choice(_DEPARTMENTS),
                AccountId=account["Id"] if account else None,
                OwnerId=account["OwnerId"] if account else choice(self.user_ids),
                LeadSource=choice(_SOURCES),
                HasOptedOutOfEmail=int(rng.random() < 0.05),
                Birthdate=_date(ANCHOR_S - rng.randint(20, 70) * 31_557_600) if rng.random() < 0.3 else None,
                **mailing,
            )
        return rows

    def opportunities(self, accounts: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
        rng, choice = self.rng, self.choice
        rows = self.base("006", count)
        for row in rows:
            account = choice(accounts) if accounts and rng.random() < 0.95 else None
            stage = rng.choices(list(STAGES), weights=_STAGE_WEIGHTS)[0]
            row.update(
                Name=f"{account['Name'] if account else self.company_name()} - {choice(_OPPORTUNITY_KINDS)}",
                StageName=stage,
                CloseDate=_date(row["CreatedDate"] + rng.randint(7, 120) * 86_400),
                AccountId=account["Id"] if account else None,
                Amount=round(rng.randint(100_000, 25_000_000) / 100, 2) if rng.random() < 0.95 else None,
                Type=choice(("New Customer", "Existing Customer - Upgrade", "Existing Customer - Renewal", None)),
                LeadSource=choice(_SOURCES),
                NextStep=choice(("Send proposal", "Schedule demo", "Negotiate terms")) if rng.random() < 0.3 else None,
                OwnerId=account["OwnerId"] if account else choice(self.user_ids),
                HasOpportunityLineItem=0,
            )
            derive_opportunity(row, {"StageName": stage})
        return rows

    def line_items(self, opportunities: list[dict[str, Any]], products: list[dict[str, Any]]) -> list[dict]:
        rng, choice = self.rng, self.choice
        owners = [o for o in opportunities if rng.random() < LINE_ITEM_SHARE]
        counts = [rng.randint(1, 3) for _ in owners]
        rows = self.base("00k", sum(counts))
        position = 0
        for opportunity, count in zip(owners, counts, strict=True):
            for sort_order in range(1, count + 1):
                row = rows[position]
                position += 1
                product = choice(products)
                row.update(
                    OpportunityId=opportunity["Id"],
                    Product2Id=product["Id"],
                    ProductCode=product["ProductCode"],
                    Name=f"{opportunity['Name']} {product['Name']}",
                    Quantity=float(rng.randint(1, 20)),
                    UnitPrice=round(rng.randint(5_000, 500_000) / 100, 2),
                    Discount=float(choice((5, 10, 15))) if rng.random() < 0.2 else None,
                    ServiceDate=_date(row["CreatedDate"] + 30 * 86_400) if rng.random() < 0.3 else None,
                    Description=choice(self.phrases) if rng.random() < 0.3 else None,
                    SortOrder=sort_order,
                    ListPrice=None,
                )
                price_line_item(row, {"UnitPrice": row["UnitPrice"]})
            items = rows[position - count : position]
            opportunity.update(Amount=round(sum(item["TotalPrice"] for item in items), 2), HasOpportunityLineItem=1)
            derive_opportunity(opportunity, {})
        return rows

    def leads(
        self,
        count: int,
        accounts: list[dict[str, Any]],
        contacts: list[dict[str, Any]],
        opportunities: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        rng, choice = self.rng, self.choice
        rows = self.base("00Q", count)
        contacts_by_account: dict[str, list[dict[str, Any]]] = {}
        for contact in contacts:
            contacts_by_account.setdefault(contact["AccountId"], []).append(contact)
        opportunities_by_account = {o["AccountId"]: o for o in opportunities if o["AccountId"]}
        for index, row in enumerate(rows):
            company = self.company_name()
            slug = "".join(char for char in company.lower() if char.isalnum())[:24]
            row.update(self.person(index, f"{slug}.example"))
            row.update(
                Company=company,
                Status=choice((LEAD_STATUSES[0], LEAD_STATUSES[1], LEAD_STATUSES[3])),
                LeadSource=choice(_SOURCES),
                Industry=choice(_INDUSTRIES),
                Rating=choice(_RATINGS),
                AnnualRevenue=float(rng.randint(50, 50_000) * 1000) if rng.random() < 0.5 else None,
                NumberOfEmployees=rng.randint(1, 5_000) if rng.random() < 0.5 else None,
                OwnerId=choice(self.user_ids),
                IsConverted=0,
                IsUnreadByOwner=int(rng.random() < 0.1),
            )
            account = choice(accounts) if accounts else None
            people = contacts_by_account.get(account["Id"]) if account else None
            if people and rng.random() < CONVERTED_SHARE:
                opportunity = opportunities_by_account.get(account["Id"]) if rng.random() < 0.5 else None
                row.update(
                    Status=LEAD_STATUSES[2],
                    IsConverted=1,
                    ConvertedDate=_date(row["LastModifiedDate"]),
                    ConvertedAccountId=account["Id"],
                    ConvertedContactId=choice(people)["Id"],
                    ConvertedOpportunityId=opportunity["Id"] if opportunity else None,
                    Company=account["Name"],
                )
        for account in accounts:
            del account["_domain"]
        return rows

    def delete_some(self, accounts: list, contacts: list, opportunities: list, line_items: list, leads: list) -> None:
        """A few rows sit in the recycle bin (IsDeleted, queryAll only); an account takes its children along."""
        rng = self.rng
        when: dict[str, int] = {}

        def delete(row: dict[str, Any], at: int | None = None) -> None:
            if at is None:
                at = row["SystemModstamp"] + rng.randint(1, max(1, ANCHOR_S - 1 - row["SystemModstamp"]))
            row.update(IsDeleted=1, LastModifiedDate=at, SystemModstamp=max(at, row["SystemModstamp"]))
            when[row["Id"]] = row["SystemModstamp"]

        for row in accounts + leads:
            if rng.random() < DELETED_SHARE:
                delete(row)
        for row in contacts + opportunities:
            if row["AccountId"] in when:
                delete(row, when[row["AccountId"]])
            elif rng.random() < DELETED_SHARE:
                delete(row)
        for row in line_items:
            if row["OpportunityId"] in when:
                delete(row, when[row["OpportunityId"]])


def _tie_page_boundaries(rows: list[dict[str, Any]]) -> None:
    """Give the TIE_WIDTH live rows around each PAGE_SIZE boundary one SystemModstamp (the lowest of them).

    Lowering later rows to an earlier stamp keeps every other row's position, so the tied run still spans
    the boundary of `WHERE IsDeleted = false ORDER BY SystemModstamp, Id`.
    """
    live = sorted((row for row in rows if not row["IsDeleted"]), key=lambda row: (row["SystemModstamp"], row["Id"]))
    for boundary in range(PAGE_SIZE, len(live), PAGE_SIZE):
        run = live[max(0, boundary - TIE_WIDTH // 2) : boundary + TIE_WIDTH // 2]
        stamp = run[0]["SystemModstamp"]
        for row in run:
            row["SystemModstamp"] = stamp
            row["LastModifiedDate"] = min(row["LastModifiedDate"], stamp)
            row["CreatedDate"] = min(row["CreatedDate"], row["LastModifiedDate"])
