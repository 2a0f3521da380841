"""Signing access tokens (EdDSA) and publishing the public key as a JWKS."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def derive_private_key(secret: str) -> Ed25519PrivateKey:
    seed = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"clientele access-token key"
    ).derive(secret.encode())
    return Ed25519PrivateKey.from_private_bytes(seed)


def load_private_key(pem: str, fallback_secret: str) -> Ed25519PrivateKey:
    if not pem.strip():
        return derive_private_key(fallback_secret)
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("CLIENTS_JWT_PRIVATE_KEY must be an Ed25519 private key")
    return key


class TokenSigner:
    def __init__(
        self, private_key: Ed25519PrivateKey, *, issuer: str, audience: str, ttl_seconds: int
    ) -> None:
        self._private_key = private_key
        public_raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._public_x = _b64url(public_raw)
        self.kid = _b64url(hashlib.sha256(public_raw).digest())[:16]
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": self._public_x,
                    "kid": self.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                }
            ]
        }

    def issue(
        self,
        *,
        account_id: uuid.UUID,
        email: str,
        name: str,
        session_id: uuid.UUID,
        staff_of: dict[uuid.UUID, str],
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(account_id),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
            "sid": str(session_id),
            "email": email,
            "name": name,
            "staff": {str(k): v for k, v in staff_of.items()},
        }
        return jwt.encode(claims, self._private_key, algorithm="EdDSA", headers={"kid": self.kid})
