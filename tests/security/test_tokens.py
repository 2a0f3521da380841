"""Scenario 10: forged, stale and edited access tokens; one-time tokens used twice, late,
for someone else or for another purpose; and answers that never tell whether an email
has an account (the same status and body, and time within 50 ms)."""

from __future__ import annotations

import base64
import json
import statistics
import time

import asyncpg
import httpx
import jwt
import pytest

from clients.identity.signing import derive_private_key
from kit.tokens import hash_token
from tests.e2e.conftest import unique_ip
from tests.e2e.test_catalog import eventually
from tests.e2e.test_gateway import PASSWORD, unique_email
from tests.security.world import (
    CLIENTS,
    Business,
    accept,
    free_order,
    invitation_token,
    invite,
    offering,
    signup,
)
from tests.support import tokens
from tests.support.infra import _asyncpg_dsn
from tests.support.stack import MailSink, SystemStack


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _edited(token: str, **changes: object) -> str:
    """The payload changed, the header and signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def forged_tokens(system: SystemStack, a: Business, b: Business) -> dict[str, str]:
    """Tokens that claim to be B's coach (staff of B); each must be refused everywhere."""
    jwk = httpx.get(f"{system.gateway_url}{CLIENTS}/.well-known/jwks.json").json()["keys"][0]
    key = derive_private_key(system.env["SECRET_KEY"])
    kid = jwk["kid"]
    victim = {"sub": b.coach.account_id, "email": b.coach.email, "staff": {b.id: "owner"}}
    now = int(time.time())

    def real(**claims: object) -> str:
        return jwt.encode(tokens.claims(**{**victim, **claims}), key, "EdDSA", {"kid": kid})

    found = {
        f"broken:{name}": token
        for name, token in tokens.broken_variants(key, kid, jwk["x"]).items()
    }
    found.update(
        {
            "alg-none-victim": tokens.unsigned(kid, **victim),
            "alg-None-capitalised": _edited_header(tokens.unsigned(kid, **victim), alg="None"),
            "alg-none-signature-kept": _edited_header(real(), alg="none"),
            "hs256-public-key-victim": tokens.hmac_with_public_key(kid, jwk["x"], **victim),
            "hs256-public-key-raw-bytes": _hs256_raw(kid, jwk["x"], victim),
            "other-key-victim": tokens.signed_by_stranger(kid, **victim),
            "embedded-jwk": _embedded_jwk(victim),
            "expired": real(iat=now - 7200, exp=now - 3600),
            "expired-just": real(iat=now - 960, exp=now - 60),
            "future-nbf": real(nbf=now + 3600),
            "wrong-aud": real(aud="payments"),
            "aud-list-without-ours": real(aud=["someone", "else"]),
            "wrong-iss": real(iss="https://evil.example"),
            "no-aud": _without(real(), "aud"),
            "no-iss": _without(real(), "iss"),
            "edited-staff": _edited(a.coach.token, staff={b.id: "owner"}),
            "edited-sub": _edited(a.coach.token, sub=b.coach.account_id),
            "edited-exp": _edited(real(iat=now - 7200, exp=now - 3600), exp=now + 3600),
            "edited-aud": _edited(real(aud="someone-else"), aud="clientele"),
            "signature-stripped": real().rsplit(".", 1)[0] + ".",
            "signature-of-another-token": ".".join(
                [*real().split(".")[:2], a.coach.token.split(".")[2]]
            ),
            "kid-path": jwt.encode(
                tokens.claims(**victim), key, "EdDSA", {"kid": "../../../../dev/null"}
            ),
        }
    )
    return found


def _edited_header(token: str, **changes: object) -> str:
    header, payload, signature = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    fields.update(changes)
    return f"{_b64(json.dumps(fields).encode())}.{payload}.{signature}"


def _without(token: str, claim: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.pop(claim)
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def _hs256_raw(kid: str, x: str, victim: dict[str, object]) -> str:
    raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(tokens.claims(**victim)).encode())
    signature = hmac.new(raw, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _embedded_jwk(victim: dict[str, object]) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    mine = Ed25519PrivateKey.generate()
    public = mine.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(public)}
    return jwt.encode(tokens.claims(**victim), mine, "EdDSA", {"kid": "mine", "jwk": jwk})


def protected_paths(b: Business) -> dict[str, str]:
    """One route of each service that B's coach may read."""
    return {
        "clients": f"/api/v1/clients/businesses/{b.id}/clients",
        "notifications": f"/api/v1/notifications/businesses/{b.id}/campaigns",
        "catalog": f"/api/v1/catalog/businesses/{b.id}/offerings",
        "payments": f"/api/v1/payments/businesses/{b.id}/orders",
    }


def test_no_forged_or_stale_access_token_is_accepted_anywhere(
    system: SystemStack, businesses: tuple[Business, Business]
) -> None:
    a, b = businesses
    forged = forged_tokens(system, a, b)
    paths = protected_paths(b)
    for service, path in paths.items():  # the control: the real token works everywhere
        for base in (system.gateway_url, system.url_of(service)):
            assert httpx.get(f"{base}{path}", headers=b.coach.headers).status_code == 200
    accepted = []
    tried = 0
    for name, token in forged.items():
        for service, path in paths.items():
            for base in (system.gateway_url, system.url_of(service)):
                answer = httpx.get(f"{base}{path}", headers={"Authorization": f"Bearer {token}"})
                tried += 1
                if answer.status_code != 401:
                    accepted.append(f"{name} at {base}{path}: {answer.status_code}")
    print(f"access tokens: {len(forged)} forged x {len(paths)} services x 2 = {tried} calls")
    assert accepted == [], "\n".join(accepted)


def test_forged_session_cookies_get_nothing(
    system: SystemStack, businesses: tuple[Business, Business]
) -> None:
    _, b = businesses
    for value in (
        "",
        "x" * 43,
        b.coach.token,  # an access token is not a session
        b.coach.session_token[:-2] + "AA",
    ):
        with httpx.Client(
            base_url=system.gateway_url, cookies={"clientele_session": value}
        ) as browser:
            assert browser.get(protected_paths(b)["clients"]).status_code == 401
            page = browser.get(f"/businesses/{b.id}/clients")
            assert page.status_code == 303 and page.headers["location"].startswith("/login")


async def _execute(system: SystemStack, sql: str, *args: object) -> str:
    conn = await asyncpg.connect(_asyncpg_dsn(system.env["CLIENTS_DATABASE_URL"]))
    try:
        result: str = await conn.execute(sql, *args)
        return result
    finally:
        await conn.close()


def _magic_token(http: httpx.Client, mail: MailSink, address: str) -> str:
    before = len([m for m in mail.messages(address) if "log in" in m["subject"].lower()])
    assert http.post(f"{CLIENTS}/magic-links", json={"email": address}).status_code == 202
    messages = mail.wait_for(address, "log in", count=before + 1)
    link = mail.link(messages[0], "/login/magic/confirm?token=")
    return link.split("token=", 1)[1].split("&", 1)[0]


async def test_one_time_tokens_work_once_in_time_for_their_purpose_and_person(
    system: SystemStack, businesses: tuple[Business, Business], mail: MailSink
) -> None:
    a, b = businesses
    refused: list[tuple[str, int]] = []
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=30) as http:

        def no(name: str, answer: httpx.Response) -> None:
            refused.append((name, answer.status_code))
            assert answer.status_code in (400, 401, 403, 404, 409, 410, 422), (name, answer.text)
            assert "access_token" not in answer.text, name

        # Magic links: once, not after expiry, not as another kind of token.
        magic = _magic_token(http, mail, a.coach.email)
        used = http.post(f"{CLIENTS}/magic-links/consume", json={"token": magic})
        assert used.status_code in (200, 201), used.text
        no("magic link reused", http.post(f"{CLIENTS}/magic-links/consume", json={"token": magic}))
        late = _magic_token(http, mail, a.coach.email)
        await _execute(
            system,
            "UPDATE one_time_tokens SET expires_at = now() - interval '1 minute' "
            "WHERE token_hash = $1",
            hash_token(late),
        )
        no("magic link expired", http.post(f"{CLIENTS}/magic-links/consume", json={"token": late}))
        other = _magic_token(http, mail, a.client.email)
        for path, body in (
            ("/invitations/accept", {"token": other, "name": "X", "password": PASSWORD}),
            ("/invitations/lookup", {"token": other}),
            ("/email-verifications/consume", {"token": other}),
            ("/password-resets/consume", {"token": other, "password": PASSWORD + "!"}),
            ("/claims/consume", {"token": other, "password": PASSWORD + "!"}),
        ):
            no(f"magic link at {path}", http.post(f"{CLIENTS}{path}", json=body))
        assert http.post(f"{CLIENTS}/magic-links/consume", json={"token": other}).status_code in (
            200,
            201,
        )

        # Invitations: once, not after expiry, only for their address, never as a login.
        first, second, third = (unique_email(f"inv{i}") for i in range(3))
        invite(http, b.id, b.coach, f"{first}, {second}, {third}")
        token = invitation_token(mail, first)
        no(
            "invitation as magic link",
            http.post(f"{CLIENTS}/magic-links/consume", json={"token": token}),
        )
        no(
            "invitation as claim",
            http.post(f"{CLIENTS}/claims/consume", json={"token": token, "password": PASSWORD}),
        )
        # Someone logged in with another address (A's coach) may not take it.
        no(
            "invitation for another email",
            http.post(
                f"{CLIENTS}/invitations/accept", json={"token": token}, headers=a.coach.headers
            ),
        )
        assert accept(http, token, "First").status_code in (200, 201)
        no("invitation reused", accept(http, token, "First again"))
        no(
            "invitation reused by another account",
            http.post(
                f"{CLIENTS}/invitations/accept", json={"token": token}, headers=a.client.headers
            ),
        )
        expired = invitation_token(mail, second)
        await _execute(
            system,
            "UPDATE invitations SET expires_at = now() - interval '1 minute' WHERE token_hash = $1",
            hash_token(expired),
        )
        no("invitation expired", accept(http, expired, "Second"))
        revoked = invitation_token(mail, third)
        invitation_id = next(
            i["id"]
            for i in http.get(
                f"{CLIENTS}/businesses/{b.id}/invitations", headers=b.coach.headers
            ).json()["items"]
            if i["email"] == third
        )
        # A's coach cannot revoke B's invitation, B's coach can; then it is dead.
        assert (
            http.post(
                f"{CLIENTS}/businesses/{a.id}/invitations/{invitation_id}/revoke",
                headers=a.coach.headers,
            ).status_code
            == 404
        )
        assert (
            http.post(
                f"{CLIENTS}/businesses/{b.id}/invitations/{invitation_id}/revoke",
                headers=b.coach.headers,
            ).status_code
            == 200
        )
        no("invitation revoked", accept(http, revoked, "Third"))
        # The member of A is not a client of B because of any of this.
        clients = http.get(f"{CLIENTS}/businesses/{b.id}/clients", headers=b.coach.headers)
        emails = {c["email"] for c in clients.json()["items"]}
        assert first in emails and second not in emails and third not in emails
        assert a.coach.email not in emails and a.client.email not in emails

        # A claim link (a new buyer's first login): once, not as something else.
        buyer = unique_email("buyer")
        free = offering(http, b.id, b.coach, "Free intro")
        free_order(http, free["id"], None, name="New Buyer", email=buyer)
        claim_link = eventually(
            lambda: next(
                (
                    link
                    for m in mail.messages(buyer)
                    for link in mail.message(m["id"])["links"]
                    if "/claim?token=" in link
                ),
                None,
            ),
            what="the claim-your-account email",
        )
        claim = claim_link.split("token=", 1)[1].split("&", 1)[0]
        no(
            "claim as magic link",
            http.post(f"{CLIENTS}/magic-links/consume", json={"token": claim}),
        )
        no("claim as invitation", accept(http, claim, "X"))
        done = http.post(
            f"{CLIENTS}/claims/consume", json={"token": claim, "password": PASSWORD + " claim"}
        )
        assert done.status_code in (200, 201), done.text
        no(
            "claim reused",
            http.post(
                f"{CLIENTS}/claims/consume", json={"token": claim, "password": PASSWORD + " again"}
            ),
        )
    print(f"one-time tokens: {len(refused)} misuses refused: {refused}")


def _shape(answer: httpx.Response) -> str:
    """The answer without anything that differs per request."""
    if not answer.content:
        return ""
    body = answer.json()
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ("instance", "request_id", "trace_id")}
    return json.dumps(body, sort_keys=True)


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/sessions", {"password": "wrong password, surely"}),
        ("/magic-links", {}),
        ("/password-resets", {}),
    ],
)
def test_answers_do_not_tell_whether_an_email_has_an_account(
    system: SystemStack, businesses: tuple[Business, Business], endpoint: str, body: dict[str, str]
) -> None:
    a, _ = businesses
    known = [a.coach.email, a.client.email, a.member.email]
    tries = 20
    counter = iter(range(10_000))

    def one(known_email: bool) -> httpx.Response:
        address = known[next(counter) % len(known)] if known_email else unique_email("nobody")
        return httpx.post(
            f"{system.gateway_url}{CLIENTS}{endpoint}",
            json={"email": address, **body},
            headers=unique_ip(),
            timeout=20,
        )

    one(True), one(False)  # warm up each path once
    times: dict[bool, list[float]] = {True: [], False: []}
    statuses: dict[bool, set[int]] = {True: set(), False: set()}
    shapes: dict[bool, set[str]] = {True: set(), False: set()}
    for _ in range(tries):  # interleaved, so a busy moment weighs on both alike
        for known_email in (True, False):
            started = time.perf_counter()
            answer = one(known_email)
            times[known_email].append((time.perf_counter() - started) * 1000)
            statuses[known_email].add(answer.status_code)
            shapes[known_email].add(_shape(answer))
    known_ms, unknown_ms = statistics.median(times[True]), statistics.median(times[False])
    known_status, unknown_status = statuses[True], statuses[False]
    known_body, unknown_body = shapes[True], shapes[False]
    print(f"{endpoint}: known {known_ms:.1f} ms, unknown {unknown_ms:.1f} ms (medians of {tries})")
    assert known_status == unknown_status and len(known_status) == 1
    assert known_body == unknown_body and len(known_body) == 1
    assert abs(known_ms - unknown_ms) < 50


def test_invitation_answers_have_the_same_status_and_shape(
    system: SystemStack, businesses: tuple[Business, Business], http: httpx.Client
) -> None:
    a, b = businesses
    has_account, has_none = a.coach.email, unique_email("nobody")
    results = invite(http, b.id, b.coach, f"{has_account}, {has_none}")
    assert [sorted(r) for r in results] == [sorted(results[0])] * 2


@pytest.mark.xfail(
    strict=True,
    reason="known: an invitation to an address with an account says 'added' (the account is "
    "added at once), to one without says 'invited', so any coach learns which addresses have "
    "accounts; changing it changes how existing accounts join (left for a product decision)",
)
def test_invitation_outcome_does_not_tell_whether_an_email_has_an_account(
    system: SystemStack, businesses: tuple[Business, Business], http: httpx.Client
) -> None:
    a, _b = businesses
    signed_up, _ = signup(http, "enum")
    results = invite(http, a.id, a.coach, f"{signed_up.email}, {unique_email('nobody')}")
    assert results[0]["outcome"] == results[1]["outcome"]
