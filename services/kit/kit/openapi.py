"""Every service's OpenAPI document, made to tell the truth about errors and auth.

FastAPI documents only the success answer and a 422 ``HTTPValidationError`` as
``application/json``. Our errors are RFC 9457 ``application/problem+json`` bodies
(``kit.errors``) with many more statuses, so :func:`truthful_openapi` rewrites each
operation's responses once, here, for every service: the problem statuses any
operation can answer (through the gateway too) with the ``Problem`` schema, and the
bearer token as the security requirement of the operations that read it
(``kit.auth``: required for ``CurrentAccount``, optional for ``OptionalViewer``).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

from kit.errors import PROBLEM_JSON

BEARER = "bearer"
# The scheme name kit.auth's optional viewer declares; folded into an optional BEARER.
OPTIONAL_BEARER = "optionalBearer"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

# Problems any operation may answer, directly or through the gateway, and why.
PROBLEM_STATUSES = {
    400: "The body could not be parsed",
    401: "No valid access token (missing, malformed, expired or revoked)",
    403: "Not allowed (at the gateway also: a cookie write without its CSRF token)",
    404: "Not found, or not visible to the caller",
    409: "Conflicts with the current state",
    410: "No longer valid (a used or expired link or token)",
    413: "The body is larger than the gateway accepts",
    422: "Invalid input; errors[] names each field",
    429: "Too many requests; Retry-After says when to try again",
    503: "A dependency is temporarily unavailable; try again",
}

FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "title": "FieldError",
    "type": "object",
    "required": ["field", "message", "location"],
    "properties": {
        "field": {"type": "string"},
        "message": {"type": "string"},
        "location": {"type": "string"},
    },
}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details (kit.errors); some problems add members.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
        "request_id": {"type": "string"},
    },
    "additionalProperties": True,
}
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "An access token from the clients service (or the gateway's session).",
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def make_truthful(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a FastAPI-generated document in place (and return it)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["FieldError"] = FIELD_ERROR_SCHEMA
    schemes = components.setdefault("securitySchemes", {})
    schemes.pop(OPTIONAL_BEARER, None)
    schemes[BEARER] = BEARER_SCHEME
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in PROBLEM_STATUSES.items():
                if status == 422 or str(status) not in responses:
                    responses[str(status)] = _problem(description)
            names = {name for requirement in operation.get("security", []) for name in requirement}
            if BEARER in names:
                operation["security"] = [{BEARER: []}]
            elif OPTIONAL_BEARER in names:
                operation["security"] = [{}, {BEARER: []}]
    return schema


def truthful_openapi(app: FastAPI) -> None:
    """Serve the rewritten document at the app's ``openapi_url``."""
    generate = app.openapi  # FastAPI's own, cached until the routes change
    rewritten: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        schema = generate()
        if not rewritten or rewritten[0] is not schema:
            rewritten[:] = [make_truthful(schema)]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the document lists for ``path`` (for a 405's ``Allow``), or none."""
    found: set[str] = set()
    for template, item in app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            found.update(m.upper() for m in item if m in HTTP_METHODS)
    return sorted(found)  # no HEAD: FastAPI's routes answer it 405
