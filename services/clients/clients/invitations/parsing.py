"""Turning pasted text into email addresses.

Coaches paste addresses separated by commas, spaces, semicolons or new
lines, sometimes as ``Jane Doe <jane@example.com>`` copied from a mail
client. Each address is reported by itself: an invalid one never stops the
others. Duplicates (after normalisation) are folded into the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kit.validation import normalize_email

_ENTRIES = re.compile(r"[,;\n\r]+")
_BRACKETED = re.compile(r"<([^<>]*)>")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class ParsedAddress:
    input: str
    email: str | None
    reason: str | None = None


def _candidates(text: str) -> list[str]:
    found: list[str] = []
    for entry in _ENTRIES.split(text):
        entry = entry.strip()
        if not entry:
            continue
        bracketed = _BRACKETED.search(entry)
        if bracketed:  # "Jane Doe <jane@example.com>": the name is not an address
            found.append(bracketed.group(1).strip())
        else:
            found.extend(part for part in _SPACES.split(entry) if part)
    return found


def parse_addresses(text: str) -> list[ParsedAddress]:
    parsed: list[ParsedAddress] = []
    seen: set[str] = set()
    for candidate in _candidates(text):
        try:
            email = normalize_email(candidate)
        except ValueError as exc:
            parsed.append(ParsedAddress(candidate, None, str(exc)))
            continue
        if email in seen:
            continue
        seen.add(email)
        parsed.append(ParsedAddress(candidate, email))
    return parsed
