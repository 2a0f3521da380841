"""Input types shared by services: emails, names, local redirect paths."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated
from urllib.parse import unquote, urlsplit

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, StringConstraints

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalize_email(value: str) -> str:
    """Trimmed, validated and lower-cased: emails are unique case-insensitively."""
    value = value.strip()
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return result.normalized.lower()


def clean_text(value: str) -> str:
    """One line of user text: trimmed, NFC, no control characters (it may reach an email header)."""
    value = unicodedata.normalize("NFC", value.strip())
    if _CONTROL.search(value):
        raise ValueError("must not contain line breaks or control characters")
    if not value:
        raise ValueError("must not be empty")
    return value


Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(normalize_email)]
Name = Annotated[str, StringConstraints(max_length=200), AfterValidator(clean_text)]


def safe_next_path(value: str | None) -> str | None:
    """A redirect target only if it is a path on this site; anything else is dropped.

    Refuses scheme-relative (``//host``), backslash tricks (``/\\host``),
    absolute URLs, ``javascript:`` and their percent-encoded forms.
    """
    if not value or len(value) > 500:
        return None
    for candidate in (value, unquote(value), unquote(unquote(value))):
        if _CONTROL.search(candidate) or "\\" in candidate:
            return None
        if not candidate.startswith("/") or candidate.startswith("//"):
            return None
        parts = urlsplit(candidate)
        if parts.scheme or parts.netloc:
            return None
    return value


# The furthest a page may start: past PostgreSQL's BIGINT an offset was a 500, and no
# list here is anywhere near this long.
MAX_OFFSET = 1_000_000_000
