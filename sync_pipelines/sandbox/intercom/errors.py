"""Intercom's one error shape, `error.list` (intercom.md §2), and the errors the sandbox raises."""

import uuid
from typing import Any

from starlette.responses import JSONResponse


def error_list(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        item["field"] = field
    return {"type": "error.list", "request_id": str(uuid.uuid4()), "errors": [item]}


class IntercomError(Exception):
    """An HTTP status plus one `error.list` entry; `field` names the parameter at fault, when there is one."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def response(self) -> JSONResponse:
        return JSONResponse(error_list(self.code, self.message, self.field), self.status)


def unauthorized() -> IntercomError:
    return IntercomError(401, "unauthorized", "Access Token Invalid")


def not_found(message: str = "Resource Not Found") -> IntercomError:
    return IntercomError(404, "not_found", message)


def contact_not_found() -> IntercomError:
    return not_found("User Not Found")


def company_not_found() -> IntercomError:
    return IntercomError(404, "company_not_found", "Company Not Found")


def bad_request(message: str, field: str | None = None) -> IntercomError:
    return IntercomError(400, "bad_request", message, field)


def parameter_invalid(message: str, field: str | None = None) -> IntercomError:
    return IntercomError(400, "parameter_invalid", message, field)


def parameter_not_found(message: str, field: str | None = None) -> IntercomError:
    return IntercomError(400, "parameter_not_found", message, field)
