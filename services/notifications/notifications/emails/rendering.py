"""Email templates: ``<name>.subject.txt``, ``<name>.txt`` and ``<name>.html`` per email.

HTML templates are autoescaped, text templates are not; an undefined
variable is an error, never an empty string in a customer's inbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

# Line breaks (including Unicode ones) and other control characters: none may reach a header.
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s{2,}")

SUBJECT_MAX_LENGTH = 400


def one_line(value: str, max_length: int = 200) -> str:
    """User text made safe for a header: control characters become spaces."""
    cleaned = _SPACES.sub(" ", _NOT_ONE_LINE.sub(" ", value)).strip()
    return cleaned[:max_length]


def header_text(value: str, max_length: int = 200) -> str:
    """:func:`one_line`, and never an RFC 2047 encoded word: the email package decodes
    ``=?utf-8?q?=0D=0ABcc:...?=`` in a header it is given, and Python before 3.11.10
    (CVE-2024-6923) writes the line break it decodes to as is, ending the header. A
    zero-width space after the ``=`` keeps the text as typed, and only text."""
    return one_line(value, max_length).replace("=?", "=\u200b?")


def describe_duration(duration: timedelta) -> str:
    """'15 minutes', '60 minutes', '48 hours': rounded to the minute, hours from two hours on."""
    minutes = max(1, round(duration.total_seconds() / 60))
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes // 60} hours"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def describe_days(duration: timedelta) -> str:
    """'1 day', '7 days' (rounded); under a day, as :func:`describe_duration` says it."""
    days = round(duration.total_seconds() / 86400)
    if days < 1:
        return describe_duration(duration)
    return "1 day" if days == 1 else f"{days} days"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text_body: str
    html_body: str


class EmailRenderer:
    def __init__(self) -> None:
        self.environment = Environment(
            loader=PackageLoader("notifications", "templates/emails"),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            # Templates only change with a deploy; never stat files from the event loop.
            auto_reload=False,
        )
        # Load (and compile) every template now: the disk is read once, at start,
        # and a broken template stops the process instead of a delivery.
        for name in self.environment.list_templates():
            self.environment.get_template(name)

    def render(self, template: str, context: dict[str, Any]) -> RenderedEmail:
        subject = one_line(
            self.environment.get_template(f"{template}.subject.txt").render(context),
            SUBJECT_MAX_LENGTH,
        )
        context = {**context, "subject": subject}
        return RenderedEmail(
            subject=subject,
            text_body=self.environment.get_template(f"{template}.txt").render(context),
            html_body=self.environment.get_template(f"{template}.html").render(context),
        )
