"""Forged and broken access tokens, for checking that every verifier refuses them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": "clientele",
        "aud": "clientele",
        "sub": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
        "email": "mallory@example.com",
        "name": "Mallory",
        "staff": {},
    }
    base.update(overrides)
    return base


def unsigned(kid: str, **overrides: object) -> str:
    """``alg: none``: no signature at all."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{_b64(claims(**overrides))}."


def signed_by_stranger(kid: str, **overrides: object) -> str:
    """A valid-looking EdDSA token claiming our kid but signed with another key."""
    return jwt.encode(
        claims(**overrides), Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid}
    )


def hmac_with_public_key(kid: str, public_x: str, **overrides: object) -> str:
    """The classic confusion attack: HS256 keyed with the published public key."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}

    signing_input = f"{_b64(header)}.{_b64(claims(**overrides))}"
    signature = hmac.new(public_x.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def broken_variants(private_key: Ed25519PrivateKey, kid: str, public_x: str) -> dict[str, str]:
    """Every kind of bad token; some are signed with the real key to isolate one fault."""
    now = int(time.time())

    def real(payload: dict[str, object]) -> str:
        return jwt.encode(payload, private_key, algorithm="EdDSA", headers={"kid": kid})

    return {
        "alg-none": unsigned(kid),
        "other-key": signed_by_stranger(kid),
        "hs256-public-key": hmac_with_public_key(kid, public_x),
        "expired": real(claims(iat=now - 3600, exp=now - 1800)),
        "wrong-audience": real(claims(aud="someone-else")),
        "wrong-issuer": real(claims(iss="evil")),
        "no-exp": real({k: v for k, v in claims().items() if k != "exp"}),
        "unknown-kid": jwt.encode(
            claims(), private_key, algorithm="EdDSA", headers={"kid": "not-our-key"}
        ),
        "garbage": "not.a.token",
    }


def valid(private_key: Ed25519PrivateKey, kid: str, **overrides: object) -> str:
    return jwt.encode(claims(**overrides), private_key, algorithm="EdDSA", headers={"kid": kid})
