"""Salesforce facts the client depends on, kept as data so a change at Salesforce is a one-line edit."""

import datetime as dt

# salesforce.md §1: production login host; sandboxes use https://test.salesforce.com, and the
# client-credentials flow needs the org's My Domain host (§1.4).
LOGIN_URL = "https://login.salesforce.com"
TOKEN_PATH = "/services/oauth2/token"
AUTHORIZE_PATH = "/services/oauth2/authorize"

# salesforce.md §1.1: "api" to call the REST API, "refresh_token" to get a refresh token back.
SCOPES = ("api", "refresh_token")

# salesforce.md §2: pin one API version; every instance path hangs off /services/data/vNN.N.
API_VERSION = "62.0"

# salesforce.md §3.1: REST query batches are 200..2000 rows, 2000 by default.
MIN_BATCH_SIZE = 200
MAX_BATCH_SIZE = 2000

# salesforce.md §4.2: sObject Collections take up to 200 records per call.
COLLECTION_CHUNK = 200

# Above this many matching rows a read goes through a Bulk API 2.0 job (salesforce.md §6, §11: large
# REST reads time out and cost one call per 2000 rows; a Bulk job costs a handful of calls in all).
BULK_THRESHOLD_ROWS = 10_000

# salesforce.md §6: rows per results page (simple-salesforce's 50,000), and polling that starts at
# 0.5 s and grows to 2 s; we give up far sooner than simple-salesforce's 24 h and read over REST instead.
BULK_PAGE_RECORDS = 50_000
BULK_POLL_FIRST_SECONDS = 0.5
BULK_POLL_MAX_SECONDS = 2.0
BULK_JOB_TIMEOUT_SECONDS = 600.0
BULK_TERMINAL_STATES = frozenset({"JobComplete", "Failed", "Aborted"})

# salesforce.md §5: stop at this share of the org's daily API requests, leaving the rest to other apps.
QUOTA_SHARE = 0.8

# salesforce.md §3.2, §11: rows are committed late relative to their SystemModstamp, so an incremental
# read starts this far behind its cursor; the re-read rows are deduplicated downstream.
INCREMENTAL_OVERLAP = dt.timedelta(minutes=5)
CURSOR_FIELD = "SystemModstamp"

# salesforce.md §2: REST datetimes ("2024-01-15T10:20:30.000+0000", whole seconds, so many rows share one,
# §3.2); SOQL datetime literals are unquoted UTC ISO-8601.
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.000+0000"
SOQL_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# salesforce.md §4.1, §6: Bulk CSV carries no types (null is an empty field, booleans true/false), so values
# are typed back, by the describe type of their field, to what the REST API returns for them.
BOOLEAN_TYPES = frozenset({"boolean"})
INTEGER_TYPES = frozenset({"int"})
NUMBER_TYPES = frozenset({"double", "currency", "percent"})
DATETIME_TYPES = frozenset({"datetime"})

# salesforce.md §5: error codes that come with a 400 yet succeed on a later try (5xx are retried anyway).
RETRYABLE_ERROR_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})

# salesforce.md §3.1, §5: the client name Salesforce shows in its API usage reports.
CALL_OPTIONS = "client=sync_pipelines"

# salesforce.md §9: Outbound Messages carry up to 100 notifications, each with the fields an admin selected;
# 100 records of a few kB each is well under this.
MAX_WEBHOOK_BODY_BYTES = 4 * 1024 * 1024
# salesforce.md §9: Salesforce drops a message it could not deliver for 24 hours; an older one is a replay.
OUTBOUND_MESSAGE_MAX_AGE_HOURS = 24
