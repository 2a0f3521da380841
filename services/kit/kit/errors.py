"""Errors as RFC 9457 problem+json.

Services raise :class:`ServiceError` subclasses; the handlers installed by
:func:`install_error_handlers` turn them (and FastAPI's validation errors)
into ``application/problem+json`` answers with a stable ``type``. Validation
errors name the field in ``errors[].field``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kit.db import is_disconnect
from kit.logging import current_ids, get_logger

PROBLEM_JSON = "application/problem+json"
log = get_logger(__name__)


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str
    location: str = "body"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "location": self.location}


class ServiceError(Exception):
    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = list(errors)
        self.headers = headers or {}
        self.extra = extra

    @property
    def type(self) -> str:
        return f"/problems/{self.slug}"


class InvalidInput(ServiceError):
    status, slug, title = 422, "validation-error", "Invalid input"

    @classmethod
    def for_field(cls, field: str, message: str, location: str = "body") -> InvalidInput:
        return cls(f"{field}: {message}", errors=[FieldError(field, message, location)])


class Unauthorized(ServiceError):
    status, slug, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class Forbidden(ServiceError):
    status, slug, title = 403, "forbidden", "Not allowed"


class NotFound(ServiceError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(ServiceError):
    status, slug, title = 409, "conflict", "Conflict"


class Gone(ServiceError):
    status, slug, title = 410, "gone", "No longer valid"


class TooManyRequests(ServiceError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 60, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(retry_after)})
        super().__init__(detail, **kw)


class Unavailable(ServiceError):
    status, slug, title = 503, "unavailable", "Temporarily unavailable"


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    request_id = current_ids().get("request_id")
    if request_id:
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    found = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        location = loc[0] if loc and loc[0] in {"body", "query", "path", "header", "cookie"} else ""
        path = loc[1:] if location else loc
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            message = "unknown field; it cannot be set here"
        found.append(FieldError(".".join(path) or location or "body", message, location or "body"))
    return found


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return problem_response(
        exc.status,
        exc.slug,
        exc.title,
        exc.detail,
        errors=exc.errors,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem_response(422, InvalidInput.slug, InvalidInput.title, detail, errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}.get(
        exc.status_code, "http-error"
    )
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and isinstance(request.app, FastAPI):
        # Starlette names only the methods of the first route that matched the path;
        # Allow must list every method of the resource (RFC 9110 §15.5.6).
        from kit.openapi import allowed_methods

        methods = allowed_methods(request.app, request.url.path)
        if methods:
            headers["Allow"] = ", ".join(methods)
    return problem_response(
        exc.status_code,
        slug,
        str(exc.detail),
        str(exc.detail),
        headers=headers,
    )


async def _unhandled(_request: Request, exc: Exception) -> JSONResponse:
    if is_disconnect(exc):
        # The database went away under the request (a terminated backend, a restart):
        # not our bug, and worth trying again in a moment (reads were retried already).
        log.warning("database_unavailable", error=type(exc).__name__)
        return problem_response(
            503,
            Unavailable.slug,
            Unavailable.title,
            "The database connection was lost; try again.",
            headers={"Retry-After": "1"},
        )
    log.exception("unhandled_error", error=type(exc).__name__)
    return problem_response(500, "internal-error", "Internal error", "Something went wrong.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
