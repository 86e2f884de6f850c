"""Salesforce error shapes: REST error arrays, per-record save errors, OAuth errors and injected faults."""

import json
from typing import Any

from starlette.responses import JSONResponse

NOT_FOUND_MESSAGE = "The requested resource does not exist"


class SalesforceError(Exception):
    """A REST error: HTTP status plus the body `[{"message", "errorCode", "fields"?}]` (salesforce.md §5).

    `fields` is only rendered for field-level errors, as in the fact sheet's examples.
    """

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields

    def body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), self.status)

    def save_error(self) -> dict[str, Any]:
        """The per-record form used in save results: `statusCode`, not `errorCode` (salesforce.md §4.2)."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields or []}


def not_found() -> SalesforceError:
    return SalesforceError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)


def invalid_session() -> SalesforceError:
    """salesforce.md §1.5, §5: expired, revoked or unknown token."""
    return SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid")


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    """Token endpoint errors (salesforce.md §1.5)."""
    return JSONResponse({"error": error, "error_description": description}, status)


def fault(server_error: bool, choice: float) -> tuple[int, bytes]:
    """(status, body) of an injected fault: 500 UNKNOWN_EXCEPTION or 503 SERVER_UNAVAILABLE, or the retryable
    concurrent-request REQUEST_LIMIT_EXCEEDED that Salesforce sends instead of a 429 (salesforce.md §5)."""
    if server_error and choice < 0.5:
        error = SalesforceError(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred (sandbox fault)")
    elif server_error:
        error = SalesforceError(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable (sandbox fault)")
    else:
        error = SalesforceError(
            403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentRequests (Concurrent API Requests) Limit exceeded."
        )
    return error.status, json.dumps(error.body()).encode()
