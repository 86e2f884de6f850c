"""Xero facts the client depends on, kept as data so a change at Xero is a one-line edit (xero.md)."""

# xero.md §0: production hosts; the sandbox mirrors each under its own prefix.
API_URL = "https://api.xero.com"
IDENTITY_URL = "https://identity.xero.com"
LOGIN_URL = "https://login.xero.com"

# xero.md §0, §1.2, §1.3: paths below those hosts.
AUTHORIZE_PATH = "/identity/connect/authorize"
TOKEN_PATH = "/connect/token"
CONNECTIONS_PATH = "/connections"
ACCOUNTING_PATH = "/api.xro/2.0"

# xero.md §3.1: pageSize accepts 1..1000.
MAX_PAGE_SIZE = 1000

# xero.md §5: per-tenant limits.
CALLS_PER_MINUTE = 60
MAX_CONCURRENT = 5
CALLS_PER_DAY = 5000
RATE_WINDOW_SECONDS = 60.0

# xero.md §1.4: refresh this long before the access token expires (xero-python's buffer).
REFRESH_BUFFER_SECONDS = 60

# xero.md §4: batch writes, each element answered on its own with summarizeErrors=false. Fifty keeps a request
# small enough to retry cheaply while a thousand contacts still take only twenty of the 60 calls a minute.
WRITE_BATCH = 50

# xero.md §4.3: Idempotency-Key header length limit.
MAX_IDEMPOTENCY_KEY_CHARS = 128

# xero.md §3.2: If-Modified-Since is a UTC timestamp without offset.
IF_MODIFIED_SINCE_FORMAT = "%Y-%m-%dT%H:%M:%S"

# xero.md §1.8: apps created from 2 March 2026 may only request granular scopes; offline_access is
# what yields a refresh token (§1.3). The flows read invoices, payments and bank transactions, and write
# contacts (with their groups and notes), invoices and payments.
SCOPES = ("offline_access", "accounting.invoices", "accounting.payments", "accounting.banktransactions.read",
          "accounting.contacts")  # fmt: skip

# xero.md §6: events carry IDs only (~330 bytes each), no maximum is documented: 1 MiB is ~3,000, 30 sandbox batches.
MAX_WEBHOOK_BODY_BYTES = 1024 * 1024
