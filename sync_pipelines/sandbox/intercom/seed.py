"""Deterministic workspace data: the same seed and sizes always give identical rows.

A seeded Faker fills small pools (names, company words, sentences) once; records draw from them with one
random.Random(seed), so 10,000 contacts seed in well under a second. Times are whole seconds before a fixed
anchor; about one contact in ten shares its predecessor's updated_at (an import), so a cursor must break ties.

Deliberate edge cases replace the first contacts and carry custom_attributes.sandbox_case (see EDGE_CASES):
emails differing only in case (a user and a lead), one-word, non-Latin, empty and missing names, a lead without
email, a contact with more tags than a contact embeds (12 > 10), one attached to 11 companies and an archived
one. Companies include a shared name under two company_ids, websites in several formats, a `tax_number` custom
attribute in national formats, and the last two companies without contacts (absent from POST /companies/list).
"""

import random
from datetime import UTC, datetime
from typing import Any

from faker import Faker

from sync_pipelines.sandbox.intercom.ids import hex_id
from sync_pipelines.sandbox.intercom.render import empty_location, new_contact_data

ANCHOR_S = int(datetime(2025, 6, 1, tzinfo=UTC).timestamp())
DAY_S = 86_400
HISTORY_S = 365 * DAY_S
TIE_SHARE = 0.1
LEAD_SHARE = 0.25
FIRST_ADMIN_ID = 991_267_401
FIRST_TAG_ID = 101
FIRST_PLAN_ID = 201
FIRST_CONVERSATION_ID = 1001
FIRST_PART_ID = 50_001
FIRST_SOURCE_ID = 403_918_001
CONVERSATION_SPAN_S = 12 * DAY_S  # the longest a seeded conversation runs: 4 replies + a close
EMPTY_COMPANIES = 2  # intercom.md §6: companies without contacts are left out of /companies/list
_POOL = 60

ADMIN_TITLES = ("Support Lead", "Account Manager", "Customer Success")
TAG_NAMES = (
    "VIP",
    "Churn risk",
    "Beta",
    "Newsletter",
    "Enterprise",
    "Trial",
    "Partner",
    "Do not contact",
    "Onboarding",
    "Upsell",
    "Billing issue",
    "NPS promoter",
)
SEGMENTS = (("Active users", "user"), ("New leads", "contact"), ("Paying customers", "user"), ("Dormant users", "user"))
PLANS = ("Free", "Pro", "Enterprise")
INDUSTRIES = ("Software", "Retail", "Manufacturing", "Healthcare", "Finance", "Education", "Logistics", None)
COMPANY_KINDS = ("Labs", "Systems", "Group", "Partners", "Studio", "Works", "Foods", "Analytics", "Logistics", "Ltd")
# (city, region, country, country_code, continent_code) for contact locations.
LOCATIONS = (
    ("Dublin", "Leinster", "Ireland", "IE", "EU"),
    ("London", "England", "United Kingdom", "GB", "EU"),
    ("San Francisco", "California", "United States", "US", "NA"),
    ("New York", "New York", "United States", "US", "NA"),
    ("Sydney", "New South Wales", "Australia", "AU", "OC"),
    ("Berlin", "Berlin", "Germany", "DE", "EU"),
    ("Toronto", "Ontario", "Canada", "CA", "NA"),
    ("Tokyo", "Tokyo", "Japan", "JP", "AS"),
    ("São Paulo", "São Paulo", "Brazil", "BR", "SA"),
    ("Athens", "Attica", "Greece", "GR", "EU"),
)
BROWSERS = (("chrome", "124.0", "en-US", "Mac OS X"), ("firefox", "125.0", "en-GB", "Windows 10"), (None,) * 4)
# sandbox_case -> (role, name, email): the deliberate contacts, in seed order.
EDGE_CASES: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("email_case_user", "user", "Jordan Lee", "Jordan.Lee@Example.com"),
    ("email_case_lead", "lead", "Jordan Lee", "jordan.lee@example.com"),
    ("one_word_name", "user", "Cher", "cher@example.com"),
    ("non_latin_name_ja", "user", "山田太郎", "taro.yamada@example.jp"),
    ("non_latin_name_el", "user", "Ελένη Παπαδοπούλου", "eleni.papadopoulou@example.gr"),
    ("non_latin_name_ru", "user", "Иван Петров", "ivan.petrov@example.ru"),
    ("non_latin_name_ar", "lead", "محمد علي", "mohammed.ali@example.ae"),
    ("empty_name", "user", "", "no.name@example.com"),
    ("lead_without_email", "lead", None, None),
    ("many_tags", "user", "Tagged Everywhere", "tagged.everywhere@example.com"),
    ("many_companies", "user", "Board Member", "board.member@example.com"),
    ("archived", "user", "Archie Archived", "archie.archived@example.com"),
)

Rows = dict[str, list[dict[str, Any]]]


def generate(seed: int, contacts: int, companies: int, conversations: int) -> tuple[Rows, dict[str, int]]:
    """Every table's rows (columns, with `data` as a dict) and the last number of each id sequence."""
    return _Generator(seed).run(contacts, companies, conversations)


def _tax_number(rng: random.Random) -> str:
    """A VAT/ABN/EIN-like number in the format of one of four countries."""
    digits = "".join(rng.choice("0123456789") for _ in range(11))
    return rng.choice(
        (f"GB{digits[:9]}", f"{digits[:2]} {digits[2:5]} {digits[5:8]} {digits[8:]}", f"DE{digits[:9]}")
        + (f"{digits[:2]}-{digits[2:9]}",)
    )


class _Generator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.first_names = [fake.first_name() for _ in range(_POOL * 2)]
        self.last_names = [fake.last_name() for _ in range(_POOL * 2)]
        self.words = [fake.word() for _ in range(_POOL)]
        self.sentences = [fake.sentence(nb_words=8) for _ in range(_POOL)]
        self.taken: set[str] = set()

    def run(self, contacts: int, companies: int, conversations: int) -> tuple[Rows, dict[str, int]]:
        admins = self.admins()
        admin_ids = [a["id"] for a in admins]
        tags = [
            {"id": str(FIRST_TAG_ID + n), "name": name, "created_at": ANCHOR_S - HISTORY_S}
            for n, name in enumerate(TAG_NAMES)
        ]
        segments = [
            {
                "id": hex_id("segment", ANCHOR_S - HISTORY_S, n),
                "name": name,
                "person_type": person_type,
                "created_at": ANCHOR_S - HISTORY_S,
                "updated_at": ANCHOR_S - HISTORY_S,
            }
            for n, (name, person_type) in enumerate(SEGMENTS, start=1)
        ]
        company_rows, company_taggings = self.companies(companies, tags, admin_ids)
        contact_rows, links, contact_taggings = self.contacts(contacts, company_rows, tags, admin_ids)
        members = self.members(contact_rows, company_rows, segments)
        conversation_rows, parts, conversation_taggings = self.conversations(conversations, contact_rows, admins, tags)
        rows = {
            "ic_admins": [{"id": a["id"], "data": a} for a in admins],
            "ic_tags": tags,
            "ic_segments": segments,
            "ic_companies": company_rows,
            "ic_contacts": contact_rows,
            "ic_links": links,
            "ic_taggings": company_taggings + contact_taggings + conversation_taggings,
            "ic_members": members,
            "ic_conversations": conversation_rows,
            "ic_parts": parts,
        }
        counters = {  # the last number each sequence handed out
            "contact": len(contact_rows),
            "company": len(company_rows),
            "segment": len(segments),
            "tag": FIRST_TAG_ID + len(tags) - 1,
            "plan": FIRST_PLAN_ID + len(PLANS) - 1,
            "conversation": FIRST_CONVERSATION_ID + len(conversation_rows) - 1,
            "part": FIRST_PART_ID + len(parts) - 1,
            "source": FIRST_SOURCE_ID + len(conversation_rows) - 1,
        }
        return rows, counters

    # -- pieces -------------------------------------------------------------------------------

    def created_times(self, count: int) -> list[int]:
        return sorted(ANCHOR_S - self.rng.randint(DAY_S, HISTORY_S) for _ in range(count))

    def person(self) -> tuple[str, str]:
        return self.rng.choice(self.first_names), self.rng.choice(self.last_names)

    def unique_email(self, first: str, last: str, domain: str) -> str:
        base = f"{first}.{last}".lower().replace("'", "").replace(" ", "")
        email, n = f"{base}@{domain}", 1
        while email.casefold() in self.taken:
            n += 1
            email = f"{base}{n}@{domain}"
        self.taken.add(email.casefold())
        return email

    def admins(self) -> list[dict[str, Any]]:
        admins = []
        for n, title in enumerate(ADMIN_TITLES):
            first, last = self.person()
            admins.append(
                {
                    "type": "admin",
                    "id": str(FIRST_ADMIN_ID + n),
                    "name": f"{first} {last}",
                    "email": f"{first}.{last}@sandbox-workspace.example".lower(),
                    "job_title": title,
                    "away_mode_enabled": n == len(ADMIN_TITLES) - 1,
                    "away_mode_reassign": False,
                    "away_status_reason_id": None,
                    "has_inbox_seat": True,
                    "team_ids": [],
                    "avatar": None,
                }
            )
        return admins

    def companies(
        self, count: int, tags: list[dict[str, Any]], admin_ids: list[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rng = self.rng
        rows, taggings = [], []
        for n, created in enumerate(self.created_times(count), start=1):
            name = f"{rng.choice(self.last_names)} {rng.choice(COMPANY_KINDS)}"
            if n == 2:
                name = rows[0]["data"]["name"]  # two companies, one name, different company_ids
            slug = "".join(ch for ch in name.lower() if ch.isalnum())
            website = rng.choice(
                (f"https://www.{slug}.com", f"http://{slug}.io/", f"{slug}.co.uk", f"https://{slug}.com/about", None)
            )
            plan_index = rng.randrange(len(PLANS) + 1)
            custom: dict[str, Any] = {"country": rng.choice(LOCATIONS)[3]}
            if rng.random() < 0.4:
                custom["tax_number"] = _tax_number(rng)
            updated = min(ANCHOR_S - 1, created + rng.randint(0, 90 * DAY_S))
            company_key = hex_id("company", created, n)
            rows.append(
                {
                    "id": company_key,
                    "company_id": f"acct-{n:05d}",
                    "created_at": created,
                    "updated_at": updated,
                    "last_request_at": updated if rng.random() < 0.8 else None,
                    "data": {
                        "name": name,
                        "remote_created_at": created - rng.randint(0, 400) * DAY_S,
                        "monthly_spend": rng.choice((0, 49, 99, 249, 999, 4999)),
                        "session_count": rng.randint(0, 500),
                        "size": rng.choice((None, 5, 20, 120, 800, 4000)),
                        "website": website,
                        "industry": rng.choice(INDUSTRIES),
                        "plan": (
                            {"type": "plan", "id": str(FIRST_PLAN_ID + plan_index), "name": PLANS[plan_index]}
                            if plan_index < len(PLANS)
                            else {}
                        ),
                        "custom_attributes": custom,
                    },
                }
            )
            if rng.random() < 0.2:
                tag = rng.choice(tags[4:7])  # Enterprise, Trial, Partner
                taggings.append(self.tagging("company", company_key, tag["id"], updated, admin_ids))
        return rows, taggings

    def tagging(self, kind: str, target: str, tag_id: str, at: int, admin_ids: list[str]) -> dict[str, Any]:
        return {
            "kind": kind,
            "target_id": target,
            "tag_id": tag_id,
            "applied_at": at,
            "applied_by": self.rng.choice(admin_ids),
        }

    def contacts(
        self, count: int, companies: list[dict[str, Any]], tags: list[dict[str, Any]], admin_ids: list[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        rng = self.rng
        rows, links, taggings = [], [], []
        attachable = companies[: max(0, len(companies) - EMPTY_COMPANIES)] if len(companies) > 4 else companies
        previous_updated = None
        for n, created in enumerate(self.created_times(count), start=1):
            case = EDGE_CASES[n - 1] if n <= len(EDGE_CASES) else None
            first, last = self.person()
            role = case[1] if case else ("lead" if rng.random() < LEAD_SHARE else "user")
            if case:
                name, email = case[2], case[3]
                if email:
                    self.taken.add(email.casefold())
            else:
                name = f"{first} {last}"
                email = None if role == "lead" and rng.random() < 0.3 else self.unique_email(first, last, "example.com")
            if previous_updated is not None and rng.random() < TIE_SHARE and previous_updated >= created:
                updated = previous_updated  # imported together: same second as the previous contact
            else:
                updated = min(ANCHOR_S - 1, created + rng.randint(0, 60 * DAY_S))
            previous_updated = updated
            city, region, country, country_code, continent = rng.choice(LOCATIONS)
            browser, version, language, os_name = rng.choice(BROWSERS)
            custom: dict[str, Any] = (
                {"plan": rng.choice(PLANS), "seats": rng.randint(1, 50)}
                if role == "user"
                else {"lead_source": rng.choice(("webinar", "ebook", "chat", "referral"))}
            )
            if case:
                custom["sandbox_case"] = case[0]
            last_seen = min(ANCHOR_S - 1, updated + rng.randint(0, 20 * DAY_S)) if rng.random() < 0.8 else None
            data = new_contact_data(
                external_id=f"user-{n:06d}" if role == "user" else None,
                email=email,
                email_domain=email.rsplit("@", 1)[1] if email else None,
                phone=f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}" if rng.random() < 0.6 else None,
                name=name,
                owner_id=rng.choice(admin_ids) if rng.random() < 0.5 else None,
                signed_up_at=created if role == "user" else None,
                last_seen_at=last_seen,
                browser=browser,
                browser_version=version,
                browser_language=language,
                os=os_name,
                location={
                    **empty_location(),
                    "country": country,
                    "region": region,
                    "city": city,
                    "country_code": country_code,
                    "continent_code": continent,
                },
                custom_attributes=custom,
            )
            contact_id = hex_id("contact", created, n)
            rows.append(
                {
                    "id": contact_id,
                    "role": role,
                    "created_at": created,
                    "updated_at": updated,
                    "archived": int(bool(case) and case[0] == "archived"),
                    "data": data,
                }
            )
            if case and case[0] == "many_tags":
                chosen = tags
            elif rng.random() < 0.3:
                chosen = rng.sample(tags, rng.randint(1, 3))
            else:
                chosen = []
            for tag in chosen:
                taggings.append(self.tagging("contact", contact_id, tag["id"], updated, admin_ids))
            if case and case[0] == "many_companies":
                linked = attachable[:11]
            elif role == "user" and attachable and rng.random() < 0.85:
                linked = rng.sample(attachable, min(len(attachable), 2 if rng.random() < 0.1 else 1))
            else:
                linked = []
            links.extend({"contact_id": contact_id, "company_id": c["id"], "created_at": created} for c in linked)
        return rows, links, taggings

    @staticmethod
    def members(
        contacts: list[dict[str, Any]], companies: list[dict[str, Any]], segments: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Static memberships decided once here; /_admin/intercom/segments/{id}/members changes them."""
        active, new_leads, paying, dormant = (s["id"] for s in segments)
        members = []
        for row in contacts:
            data = row["data"]
            if row["role"] == "lead":
                if row["created_at"] >= ANCHOR_S - 60 * DAY_S:
                    members.append({"kind": "contact", "target_id": row["id"], "segment_id": new_leads})
                continue
            seen = data["last_seen_at"]
            recent = seen is not None and seen >= ANCHOR_S - 30 * DAY_S
            members.append({"kind": "contact", "target_id": row["id"], "segment_id": active if recent else dormant})
            if data["custom_attributes"].get("plan") in ("Pro", "Enterprise"):
                members.append({"kind": "contact", "target_id": row["id"], "segment_id": paying})
        for row in companies:
            if row["data"]["plan"].get("name") in ("Pro", "Enterprise"):
                members.append({"kind": "company", "target_id": row["id"], "segment_id": paying})
        return members

    def conversations(
        self,
        count: int,
        contacts: list[dict[str, Any]],
        admins: list[dict[str, Any]],
        tags: list[dict[str, Any]],
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        rng = self.rng
        people = [c for c in contacts if not c["archived"]]
        rows, parts, taggings = [], [], []
        part_id = FIRST_PART_ID
        if not people:
            return rows, parts, taggings
        for n in range(count):
            starter = rng.choice(people)
            involved = [starter] + ([rng.choice(people)] if rng.random() < 0.1 else [])
            involved = list({c["id"]: c for c in involved}.values())
            latest = ANCHOR_S - CONVERSATION_SPAN_S  # every part lands before the anchor
            created = rng.randint(min(starter["created_at"], latest), latest)
            admin = rng.choice(admins)
            assignee = int(admin["id"]) if rng.random() < 0.8 else 0  # 2.16: unassigned reports 0
            state = rng.choices(("open", "closed", "snoozed"), (4, 5, 1))[0]
            author = {
                "type": starter["role"],
                "id": starter["id"],
                "name": starter["data"]["name"],
                "email": starter["data"]["email"] or "",  # as records.py Writer._author renders it
            }
            admin_author = {"type": "admin", "id": admin["id"], "name": admin["name"], "email": admin["email"]}
            at = created
            conversation_parts: list[dict[str, Any]] = []
            last_contact_reply = created
            last_admin_reply = None
            for turn in range(rng.randint(1, 4)):
                at += rng.randint(60, 2 * DAY_S)
                by_admin = turn % 2 == 0
                conversation_parts.append(
                    part_json(
                        part_id,
                        "comment",
                        f"<p>{rng.choice(self.sentences)}</p>",
                        at,
                        admin_author if by_admin else author,
                    )
                )
                part_id += 1
                if by_admin:
                    last_admin_reply = at
                else:
                    last_contact_reply = at
            if state == "closed":
                at += rng.randint(60, DAY_S)
                conversation_parts.append(part_json(part_id, "close", None, at, admin_author))
                part_id += 1
            updated = at
            conversation_id = str(FIRST_CONVERSATION_ID + n)
            subject = rng.choice(self.sentences).rstrip(".")
            rows.append(
                {
                    "id": conversation_id,
                    "created_at": created,
                    "updated_at": updated,
                    "data": new_conversation_data(
                        source={
                            "type": "conversation",
                            "id": str(FIRST_SOURCE_ID + n),
                            "delivered_as": "customer_initiated",
                            "subject": subject if rng.random() < 0.5 else "",
                            "body": f"<p>{rng.choice(self.sentences)} {rng.choice(self.words)}</p>",
                            "author": author,
                            "attachments": [],
                            "url": None,
                            "redacted": False,
                        },
                        contacts=[c["id"] for c in involved],
                        created_at=created,
                        state=state,
                        admin_assignee_id=assignee,
                        teammates=[admin["id"]] if last_admin_reply else [],
                        read=rng.random() < 0.7,
                        priority=rng.choice(("none", "none", "low", "medium", "high", "urgent")),
                        title=subject if rng.random() < 0.3 else None,
                        waiting_since=last_contact_reply if state == "open" and last_admin_reply is None else None,
                        snoozed_until=updated + DAY_S if state == "snoozed" else None,
                        statistics=statistics(
                            created,
                            last_contact_reply,
                            last_admin_reply,
                            updated if state == "closed" else None,
                            len(conversation_parts),
                        ),
                    ),
                }
            )
            parts.extend(
                {"conversation_id": conversation_id, "seq": seq, "data": part}
                for seq, part in enumerate(conversation_parts)
            )
            if rng.random() < 0.15:
                taggings.append(
                    self.tagging("conversation", conversation_id, rng.choice(tags)["id"], updated, [admin["id"]])
                )
        return rows, parts, taggings


def part_json(
    part_id: int,
    part_type: str,
    body: str | None,
    at: int,
    author: dict[str, Any],
    assigned_to: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A conversation part (spec `conversation_part`)."""
    return {
        "type": "conversation_part",
        "id": str(part_id),
        "part_type": part_type,
        "body": body,
        "created_at": at,
        "updated_at": at,
        "notified_at": at,
        "assigned_to": assigned_to,
        "author": author,
        "attachments": [],
        "external_id": None,
        "redacted": False,
    }


def statistics(
    created: int, last_contact_reply: int | None, last_admin_reply: int | None, closed: int | None, parts: int
) -> dict[str, Any]:
    """The conversation_statistics the sandbox keeps current (intercom.md §8). What has not happened yet is null
    (first_close_at of a conversation never closed), as the real API answers; the 2.16 description types these
    as non-null integers (DEVIATIONS.md)."""
    return {
        "type": "conversation_statistics",
        "time_to_admin_reply": (last_admin_reply - created) if last_admin_reply else None,
        "first_contact_reply_at": created,
        "last_contact_reply_at": last_contact_reply,
        "last_admin_reply_at": last_admin_reply,
        "first_close_at": closed,
        "last_close_at": closed,
        "count_reopens": 0,
        "count_assignments": 1 if last_admin_reply else 0,
        "count_conversation_parts": parts,
    }


def new_conversation_data(
    source: dict[str, Any], contacts: list[str], created_at: int, state: str = "open", **values: Any
) -> dict[str, Any]:
    """A conversation's stored fields (render.py adds id, times, tags and parts)."""
    data: dict[str, Any] = {
        "waiting_since": created_at,
        "snoozed_until": None,
        "source": source,
        "contacts": contacts,
        "first_contact_reply": {"created_at": created_at, "type": "conversation", "url": None},
        "admin_assignee_id": 0,
        "team_assignee_id": 0,
        "open": state != "closed",
        "state": state,
        "read": False,
        "priority": "none",
        "statistics": statistics(created_at, created_at, None, None, 0),
        "teammates": [],
        "title": None,
        "custom_attributes": {},
    }
    data.update(values)
    return data
