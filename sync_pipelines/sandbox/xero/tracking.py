"""Tracking categories, their options, and the Tracking a line item carries.

Rules from https://developer.xero.com/documentation/api/accounting/trackingcategories: an organisation has at most
two ACTIVE tracking categories; names are at most 100 characters (options 50 when created). Option names are unique
within their category ("For each specified tracking option the name must be unique." is Xero's message, quoted in
calcinai/xero-php#920). A line item carries at most two Tracking elements, one per category (the spec's
LineItem.Tracking), each naming a category and one of its options; responses add their IDs.
"""

import sqlite3
import uuid
from typing import Any

from sync_pipelines.sandbox.store import Store
from sync_pipelines.sandbox.xero.values import Invalid, PostDataInvalid, text

MAX_ACTIVE_CATEGORIES = 2
MAX_LINE_TRACKING = 2
CATEGORY_NAME_LENGTH = 100
OPTION_NAME_LENGTH = 50
STATUSES = ("ACTIVE", "ARCHIVED", "DELETED")


def render_option(option: dict) -> dict:
    """An option in the shape of the spec's createTrackingOptions example."""
    status = option["Status"]
    return {
        **option,
        "HasValidationErrors": False,
        "IsDeleted": status == "DELETED",
        "IsArchived": status == "ARCHIVED",
        "IsActive": status == "ACTIVE",
    }


def render_category(store: Store, category: dict, conn: sqlite3.Connection | None = None) -> dict:
    """A category with its options, in the shape of the spec's getTrackingCategories example."""
    options = store.tracking_options(category["TrackingCategoryID"], conn)
    return {**category, "Options": [render_option(option) for option in options]}


def create_category(store: Store, conn: sqlite3.Connection, element: dict) -> dict:
    """PUT /TrackingCategories: a new ACTIVE category, with any Options given alongside it."""
    if element.get("TrackingCategoryID"):
        raise Invalid("PUT only creates tracking categories; this one already has a TrackingCategoryID")
    status = element.get("Status", "ACTIVE")
    if status not in STATUSES:
        # Enum literals are case-sensitive; a wrong one is a request-level 400 (xero.md §2.1).
        raise PostDataInvalid(f"'{status}' is not a valid value for Status. Expected one of: {', '.join(STATUSES)}")
    if status != "ACTIVE":
        raise Invalid("A new tracking category must be ACTIVE")
    name = _name(element, "Name", CATEGORY_NAME_LENGTH, "tracking category")
    categories = store.tracking_categories(conn)
    if sum(c["Status"] == "ACTIVE" for c in categories) >= MAX_ACTIVE_CATEGORIES:
        raise Invalid(f"An organisation can have at most {MAX_ACTIVE_CATEGORIES} active tracking categories")
    if any(c["Name"].casefold() == name.casefold() for c in categories):
        raise Invalid(f"A tracking category named '{name}' already exists")
    category = {"Name": name, "Status": "ACTIVE", "TrackingCategoryID": str(uuid.uuid4())}
    store.save_tracking_category(conn, category)
    options = element.get("Options", [])
    if not isinstance(options, list) or not all(isinstance(option, dict) for option in options):
        raise PostDataInvalid("Options must be an array of objects")
    for option in options:
        add_option(store, conn, category["TrackingCategoryID"], option)
    return render_category(store, category, conn)


def add_option(store: Store, conn: sqlite3.Connection, category_id: str, element: dict) -> dict:
    """PUT /TrackingCategories/{id}/Options: one new ACTIVE option, its name unique within the category."""
    name = _name(element, "Name", OPTION_NAME_LENGTH, "tracking option")
    if any(o["Name"].casefold() == name.casefold() for o in store.tracking_options(category_id, conn)):
        raise Invalid("For each specified tracking option the name must be unique.")
    option = {"TrackingOptionID": str(uuid.uuid4()), "Name": name, "Status": "ACTIVE"}
    store.save_tracking_option(conn, category_id, option)
    return render_option(option)


def line_tracking(store: Store, conn: sqlite3.Connection, tracking: Any) -> list[dict]:
    """Resolve a line's Tracking to ACTIVE categories and options, by ID or by name (names compare without case)."""
    if not isinstance(tracking, list) or not all(isinstance(entry, dict) for entry in tracking):
        raise PostDataInvalid("Tracking must be an array of objects")
    if len(tracking) > MAX_LINE_TRACKING:
        raise Invalid(f"A line item can have at most {MAX_LINE_TRACKING} tracking categories")
    categories = [c for c in store.tracking_categories(conn) if c["Status"] == "ACTIVE"]
    resolved: list[dict] = []
    for entry in tracking:
        category = _match(categories, "TrackingCategoryID", entry.get("TrackingCategoryID"), entry.get("Name"))
        if category is None:
            wanted = entry.get("TrackingCategoryID") or entry.get("Name")
            raise Invalid(f"The tracking category '{wanted}' does not exist or is not active")
        options = [o for o in store.tracking_options(category["TrackingCategoryID"], conn) if o["Status"] == "ACTIVE"]
        option = _match(options, "TrackingOptionID", entry.get("TrackingOptionID"), entry.get("Option"))
        if option is None:
            wanted = entry.get("TrackingOptionID") or entry.get("Option")
            raise Invalid(f"The tracking option '{wanted}' does not exist in tracking category '{category['Name']}'")
        if any(r["TrackingCategoryID"] == category["TrackingCategoryID"] for r in resolved):
            raise Invalid(f"A line item can use the tracking category '{category['Name']}' only once")
        resolved.append(
            {
                "TrackingCategoryID": category["TrackingCategoryID"],
                "TrackingOptionID": option["TrackingOptionID"],
                "Name": category["Name"],
                "Option": option["Name"],
            }
        )
    return resolved


def _match(candidates: list[dict], id_field: str, wanted_id: Any, wanted_name: Any) -> dict | None:
    if wanted_id:
        return next((c for c in candidates if c[id_field] == wanted_id), None)
    if isinstance(wanted_name, str) and wanted_name.strip():
        return next((c for c in candidates if c["Name"].casefold() == wanted_name.strip().casefold()), None)
    return None


def _name(element: dict, field: str, max_length: int, noun: str) -> str:
    name = text(element, field, max_length)
    if name is None or not name.strip():
        raise Invalid(f"A {noun} {field} must be specified")
    return name.strip()
