"""Segment Tracking API facts the client depends on, kept as data (segment.md §1-§3)."""

# segment.md §1, §5: production host without /v1; the client appends /v1/batch.
API_URL = "https://api.segment.io"
BATCH_PATH = "/v1/batch"

# segment.md §2: hard limits enforced by Segment.
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
MAX_MESSAGE_ID_CHARS = 100

# segment.md §5: analytics-python's working batch size, a margin under MAX_BATCH_BYTES.
WORKING_BATCH_BYTES = 475_000

# segment.md §3: message types accepted in a batch.
MESSAGE_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})

# The Webhooks destinations sign with a shared secret, hex HMAC-SHA1 in this header; a batched delivery (Webhooks
# Actions) is signed over its first event only (https://segment.com/docs/connections/destinations/catalog/webhooks/,
# https://segment.com/docs/connections/destinations/catalog/actions-webhook/).
SIGNATURE_HEADER = "X-Signature"
# Webhooks Actions batches hold at most 4,000 events (the Actions page above), each at most MAX_EVENT_BYTES.
MAX_WEBHOOK_EVENTS = 4000
MAX_WEBHOOK_BODY_BYTES = MAX_WEBHOOK_EVENTS * MAX_EVENT_BYTES

# Public API (workspace management), segment.md §8: US host, and EU1 for EU workspaces
# (https://docs.segmentapis.com/tag/Getting-Started); Bearer token; the v1 media type the SDKs ask for first.
PUBLIC_API_URL = "https://api.segmentapis.com"
PUBLIC_API_EU_URL = "https://eu1.api.segmentapis.com"
PUBLIC_API_ACCEPT = "application/vnd.segment.v1+json"
# pagination.count is 1-1000 (https://docs.segmentapis.com/tag/Pagination); the largest page means fewest calls.
PUBLIC_API_MAX_PAGE_SIZE = 1000

# Profile API (Unify/Engage), segment.md §7: one host per region; Basic auth with the space's access token as the
# user name (https://segment.com/docs/unify/profile-api/). traits pages hold at most 200 traits, other resources 100.
PROFILE_API_URL = "https://profiles.segment.com"
PROFILE_API_EU_URL = "https://profiles.euw1.segment.com"
PROFILE_TRAITS_MAX_LIMIT = 200
