"""Unsubscribe tokens: stateless, signed (business id, email address) pairs.

``u1.<payload>.<mac>``, both parts unpadded urlsafe base64: the payload is
the business id's 16 bytes followed by the normalised address (UTF-8); the
mac is HMAC-SHA256 over the version and the payload, truncated to 128 bits,
under a key derived from SECRET_KEY for this purpose only. Nothing is
stored per token: a link works as long as SECRET_KEY stays the same (a
rotation invalidates the links in emails already sent). The address is
readable by whoever holds the link, who is the person it was sent to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass

VERSION = "u1"
MAX_TOKEN_LENGTH = 1000
_MAC_BYTES = 16
# Key derivation: this key signs unsubscribe links and nothing else.
_PURPOSE = b"clientele/notifications/unsubscribe-token/v1"
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]+")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # Strict: the urlsafe alphabet only, unpadded (the decoder would skip stray characters).
    if not _URLSAFE_B64.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded urlsafe base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def normalise(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True)
class UnsubscribeTarget:
    business_id: uuid.UUID
    email: str


class UnsubscribeTokens:
    def __init__(self, secret_key: str) -> None:
        key = hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()
        self._mac = hmac.new(key, VERSION.encode() + b".", hashlib.sha256)

    def _sign(self, payload: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(payload)
        return mac.digest()[:_MAC_BYTES]

    def issue(self, business_id: uuid.UUID, email: str) -> str:
        payload = business_id.bytes + normalise(email).encode()
        return f"{VERSION}.{_b64encode(payload)}.{_b64encode(self._sign(payload))}"

    def read(self, token: str) -> UnsubscribeTarget | None:
        """What a token names, or None when it is not one of ours (or was altered)."""
        if len(token) > MAX_TOKEN_LENGTH:
            return None
        version, _, rest = token.partition(".")
        encoded_payload, _, encoded_mac = rest.partition(".")
        if version != VERSION:
            return None
        try:
            payload, mac = _b64decode(encoded_payload), _b64decode(encoded_mac)
        except (ValueError, binascii.Error):
            return None
        if not hmac.compare_digest(mac, self._sign(payload)) or len(payload) <= 16:
            return None
        try:
            email = payload[16:].decode()
        except UnicodeDecodeError:
            return None
        return UnsubscribeTarget(uuid.UUID(bytes=payload[:16]), email)
