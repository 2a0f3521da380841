"""Headers one email carries beyond the standard ones (e.g. List-Unsubscribe).

Stored as a JSON object in ``emails.extra_headers``. Only the names below
are allowed, and no value may hold a line break or another control
character: a header is written by us, never smuggled in by user text. The
sender checks them again before it builds the message.
"""

from __future__ import annotations

import json
import re
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.policy import SMTP, Policy
from typing import Any

ALLOWED_HEADERS = frozenset({"List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"})
# A line may not exceed 998 characters (RFC 5322), the name and ": " included.
MAX_VALUE_LENGTH = 900

# Anything but printable ASCII: no line break, no control character, nothing to encode.
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")


class InvalidHeaders(ValueError):
    pass


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers if every name is allowed and every value is one clean line."""
    for name, value in headers.items():
        if name not in ALLOWED_HEADERS:
            raise InvalidHeaders(f"header {name!r} may not be set per email")
        if not isinstance(value, str) or not value or len(value) > MAX_VALUE_LENGTH:
            raise InvalidHeaders(f"header {name} must be a non-empty string")
        if _NOT_PRINTABLE_ASCII.search(value):
            raise InvalidHeaders(f"header {name} must be one line of printable ASCII")
    return headers


def encode_headers(headers: dict[str, str] | None) -> str | None:
    if not headers:
        return None
    return json.dumps(check_headers(headers), separators=(",", ":"), ensure_ascii=True)


def decode_headers(stored: str | None) -> dict[str, str]:
    if not stored:
        return {}
    try:
        headers = json.loads(stored)
    except ValueError as exc:
        raise InvalidHeaders("stored headers are not JSON") from exc
    if not isinstance(headers, dict):
        raise InvalidHeaders("stored headers are not an object")
    return check_headers(headers)


class VerbatimHeader(UnstructuredHeader):
    """Written on one line as it is: never folded, never RFC 2047-encoded.

    The default policy folds a long value with no spaces (List-Unsubscribe's
    URL) into encoded words, which mail clients do not decode in that header.
    The value was checked to be printable ASCII under 998 characters.
    """

    def fold(self, *, policy: Policy) -> str:  # type: ignore[override]
        return f"{self.name}: {self}{policy.linesep}"


def _header_factory() -> HeaderRegistry:
    registry = HeaderRegistry()
    for name in ALLOWED_HEADERS:
        registry.map_to_type(name.lower(), VerbatimHeader)
    return registry


# The message policy: SMTP's, but our extra headers stay verbatim (whoever flattens it).
MESSAGE_POLICY: Any = SMTP.clone(header_factory=_header_factory())
