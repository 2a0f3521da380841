"""Refusals a viewer gets (problem+json with a stable ``reason``)."""

from __future__ import annotations

from kit.errors import FieldError, Forbidden, InvalidInput, NotFound, ServiceError, Unauthorized

STATUS_OF_REASON = {
    "not_found": 404,
    "not_published": 404,
    "login_required": 401,
    "not_a_client": 403,
    "not_in_group": 403,
    "sold_out": 403,
}


def refused(reason: str, detail: str, *, login_status: int = 401) -> ServiceError:
    """The problem for an offering or collection refusal (``login_required`` is 401,
    or ``login_status`` where a contract says otherwise)."""
    status = STATUS_OF_REASON.get(reason, 403)
    if reason == "login_required":
        status = login_status
    if status == 404:
        return NotFound(detail, reason=reason)
    if status == 401:
        return Unauthorized(detail, reason=reason)
    return Forbidden(detail, reason=reason)


def discount_refused(reason: str, detail: str) -> ServiceError:
    """A discount code that does not apply: 422 naming ``discount_code``."""
    return InvalidInput(detail, errors=[FieldError("discount_code", detail)], reason=reason)
