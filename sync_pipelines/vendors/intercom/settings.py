"""Intercom facts the client depends on, kept as data so a change at Intercom is a one-line edit (intercom.md)."""

# intercom.md §1: the US host; EU and AU workspaces use api.eu.intercom.io / api.au.intercom.io.
API_URL = "https://api.intercom.io"

# intercom.md §1: pin one version and send it on every call (2.16: contact owner_id is a string).
API_VERSION = "2.16"

# intercom.md §4: cursor pages hold at most 150 records; defaults are lower, so per_page is always sent.
MAX_PER_PAGE = 150

# intercom.md §5.1: date filters match by calendar day in the workspace's time zone, and `>` starts at the
# next day; searching from two days before the cursor covers any time zone, and the client drops what is older.
SEARCH_OVERLAP_SECONDS = 2 * 86_400
CURSOR_FIELD = "updated_at"

# intercom.md §3: when the window's calls are spent, wait for X-RateLimit-Reset (whole seconds) plus this margin
# rather than meet a 429.
RESET_MARGIN_SECONDS = 0.2

# intercom.md §6.1: one open scroll per app, expiring after 60 s unused. A scroll left open by a crashed run
# answers scroll_exists; poll this many times per TTL and give up after SCROLL_WAIT_FACTOR TTLs.
SCROLL_TTL_SECONDS = 60.0
SCROLL_POLLS_PER_TTL = 6
SCROLL_WAIT_FACTOR = 1.5
MAX_SCROLL_RESTARTS = 3
# A failed scroll page is tried once more with its scroll_param before the scroll is restarted (§6.1: a
# network error means "restart the scroll operation").
SCROLL_PAGE_ATTEMPTS = 2

# intercom.md §2, §3, §6.1: error codes the client acts on.
RATE_LIMITED = "rate_limit_exceeded"
SCROLL_EXISTS = "scroll_exists"

# intercom.md §9: X-Hub-Signature is "sha1=" + hex HMAC-SHA1 of the raw body keyed with the app's client secret.
SIGNATURE_HEADER = "X-Hub-Signature"
SIGNATURE_PREFIX = "sha1="

# intercom.md §9: data.item is a whole object, no maximum is documented; a conversation's ≤500 parts get 8 KiB each.
MAX_WEBHOOK_BODY_BYTES = 4 * 1024 * 1024
