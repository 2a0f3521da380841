"""Files an email carries (an appointment's ``.ics``), stored with the email.

Stored in ``emails.attachments`` as a JSON list of ``{"filename",
"content_type", "params", "text"}``. Like the extra headers, only what is
listed here may be attached: a known content type, a plain file name, a few
content-type parameters of one short token each. The sender checks them
again and adds each as a base64 part (so its bytes, CRLF line endings
included, arrive exactly as stored). An email without attachments is built
exactly as before.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from notifications.emails.headers import InvalidHeaders

ALLOWED_TYPES = frozenset({"text/calendar"})
ALLOWED_PARAMS = frozenset({"method"})
MAX_ATTACHMENTS = 3
MAX_TEXT_OCTETS = 64 * 1024

_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TOKEN = re.compile(r"^[A-Za-z0-9-]{1,40}$")


class InvalidAttachments(InvalidHeaders):
    """Stored attachments the sender must not send. A kind of InvalidHeaders: both are
    content we wrote that failed a check, so the sender fails the email for good."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    text: str
    params: dict[str, str] = field(default_factory=dict)

    def check(self) -> Attachment:
        if self.content_type not in ALLOWED_TYPES:
            raise InvalidAttachments(f"attachment type {self.content_type!r} is not allowed")
        if not isinstance(self.filename, str) or not _FILENAME.match(self.filename):
            raise InvalidAttachments("attachment file name must be a plain file name")
        if not isinstance(self.text, str) or len(self.text.encode("utf-8")) > MAX_TEXT_OCTETS:
            raise InvalidAttachments("attachment text must be a string of at most 64 KiB")
        if not isinstance(self.params, dict):
            raise InvalidAttachments("attachment parameters must be an object")
        for name, value in self.params.items():
            if name not in ALLOWED_PARAMS:
                raise InvalidAttachments(f"attachment parameter {name!r} is not allowed")
            if not isinstance(value, str) or not _TOKEN.match(value):
                raise InvalidAttachments(f"attachment parameter {name} must be a short token")
        return self


def encode_attachments(attachments: list[Attachment] | None) -> str | None:
    if not attachments:
        return None
    if len(attachments) > MAX_ATTACHMENTS:
        raise InvalidAttachments(f"at most {MAX_ATTACHMENTS} attachments")
    return json.dumps(
        [
            {
                "filename": a.check().filename,
                "content_type": a.content_type,
                "params": a.params,
                "text": a.text,
            }
            for a in attachments
        ],
        separators=(",", ":"),
        ensure_ascii=True,
    )


def decode_attachments(stored: str | None) -> list[Attachment]:
    if not stored:
        return []
    try:
        items: Any = json.loads(stored)
    except ValueError as exc:
        raise InvalidAttachments("stored attachments are not JSON") from exc
    if not isinstance(items, list) or len(items) > MAX_ATTACHMENTS:
        raise InvalidAttachments("stored attachments are not a short list")
    attachments = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidAttachments("a stored attachment is not an object")
        attachments.append(
            Attachment(
                filename=item.get("filename"),  # type: ignore[arg-type]
                content_type=item.get("content_type"),  # type: ignore[arg-type]
                text=item.get("text"),  # type: ignore[arg-type]
                params=item.get("params") or {},
            ).check()
        )
    return attachments


def attach_all(message: EmailMessage, stored: str | None) -> None:
    """Add the stored attachments to a built message (nothing when there are none).

    The message becomes multipart/mixed: its text and HTML alternatives first,
    then each file."""
    for attachment in decode_attachments(stored):
        maintype, subtype = attachment.content_type.split("/", 1)
        message.add_attachment(
            attachment.text.encode("utf-8"),
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
            params={"charset": "utf-8", **attachment.params},
        )
