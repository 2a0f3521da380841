"""A small iCalendar (RFC 5545) writer: one event per calendar, for appointment emails.

Only what an appointment needs, written by hand so every byte is known:
CRLF line endings, lines folded at 75 octets (never inside a UTF-8
character), TEXT values escaped (``\\``, ``;``, ``,``, line breaks), times
in UTC ("Z" form, so no VTIMEZONE is needed) and parameter values quoted.
``METHOD:REQUEST`` adds or updates the event in the recipient's calendar,
``METHOD:CANCEL`` (with ``STATUS:CANCELLED``) removes it; a calendar matches
them by ``UID`` and keeps the one with the highest ``SEQUENCE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

REQUEST = "REQUEST"
CANCEL = "CANCEL"

TENTATIVE = "TENTATIVE"
CONFIRMED = "CONFIRMED"
CANCELLED = "CANCELLED"

PRODID = "-//Clientele//Appointments//EN"
CRLF = "\r\n"
MAX_LINE_OCTETS = 75

# Control characters other than the line breaks TEXT escapes: never in a value.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A parameter value is quoted; a double quote cannot appear in it at all (RFC 5545 3.1).
_NOT_IN_PARAM = re.compile(r"[\x00-\x1f\x7f\"]")


@dataclass(frozen=True)
class Person:
    name: str
    email: str


@dataclass(frozen=True)
class CalendarEvent:
    uid: str
    sequence: int
    stamp: datetime  # DTSTAMP: when this version of the event was made
    starts_at: datetime
    ends_at: datetime
    summary: str
    description: str
    organizer: Person
    attendee: Person
    method: str = REQUEST
    status: str = CONFIRMED


def utc(moment: datetime) -> str:
    """A DATE-TIME in UTC form: ``20260329T080000Z``."""
    if moment.tzinfo is None:
        raise ValueError("a calendar time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def escape_text(value: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and line breaks escaped."""
    value = _CONTROL.sub("", value)
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n")


def quote_param(value: str) -> str:
    """A parameter value, always quoted (it may hold ``:``, ``;`` or ``,``)."""
    return '"' + _NOT_IN_PARAM.sub("", value).strip() + '"'


def mailto(address: str) -> str:
    return "mailto:" + _NOT_IN_PARAM.sub("", address).strip()


def fold(line: str) -> str:
    """One content line folded into lines of at most 75 octets, each ending in CRLF.

    A continuation line starts with a space, which counts in its 75 octets; a
    multi-octet UTF-8 character is never split.
    """
    chunks: list[str] = []
    current, size, limit = "", 0, MAX_LINE_OCTETS
    for char in line:
        octets = len(char.encode("utf-8"))
        if size + octets > limit:
            chunks.append(current)
            current, size, limit = "", 0, MAX_LINE_OCTETS - 1
        current += char
        size += octets
    chunks.append(current)
    return CRLF.join([chunks[0], *(" " + chunk for chunk in chunks[1:])]) + CRLF


def calendar(event: CalendarEvent) -> str:
    """The whole VCALENDAR text (CRLF line endings, folded)."""
    if event.method not in (REQUEST, CANCEL):
        raise ValueError(f"unsupported METHOD {event.method!r}")
    if event.status not in (TENTATIVE, CONFIRMED, CANCELLED):
        raise ValueError(f"unsupported STATUS {event.status!r}")
    attendee_partstat = "DECLINED" if event.status == CANCELLED else "ACCEPTED"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        f"METHOD:{event.method}",
        "BEGIN:VEVENT",
        f"UID:{escape_text(event.uid)}",
        f"SEQUENCE:{int(event.sequence)}",
        f"DTSTAMP:{utc(event.stamp)}",
        f"DTSTART:{utc(event.starts_at)}",
        f"DTEND:{utc(event.ends_at)}",
        f"SUMMARY:{escape_text(event.summary)}",
        f"DESCRIPTION:{escape_text(event.description)}",
        f"STATUS:{event.status}",
        "TRANSP:OPAQUE",
        f"ORGANIZER;CN={quote_param(event.organizer.name)}:{mailto(event.organizer.email)}",
        (
            f"ATTENDEE;CN={quote_param(event.attendee.name)};ROLE=REQ-PARTICIPANT;"
            f"PARTSTAT={attendee_partstat};RSVP=FALSE:{mailto(event.attendee.email)}"
        ),
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(fold(line) for line in lines)
