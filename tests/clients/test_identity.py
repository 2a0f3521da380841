"""The clients service's identity API, called directly (no gateway)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import jwt
import pytest
from sqlalchemy import func, select, update

from clients import models
from clients.identity.signing import load_private_key
from kit.db import utcnow
from tests.clients.conftest import ClientsApi
from tests.support import tokens

API = "/api/v1/clients"


async def count(api: ClientsApi, table: object) -> int:
    async with api.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- signup -------------------------------------------------------------------


async def test_signup_creates_account_business_session_and_events(clients_api: ClientsApi) -> None:
    result = await clients_api.signup("  Casey@Example.COM ")
    assert result["account"]["email"] == "casey@example.com"
    assert result["account"]["email_verified"] is False
    assert result["business"]["slug"] == "casey-coaching"
    assert result["business"]["role"] == "owner"
    assert result["token_type"] == "Bearer" and result["expires_in"] == 900

    jwks = (await clients_api.http.get(f"{API}/.well-known/jwks.json")).json()
    key = jwt.PyJWK(jwks["keys"][0])
    claims = jwt.decode(
        result["access_token"],
        key.key,
        algorithms=["EdDSA"],
        audience="clientele",
        issuer="clientele",
    )
    assert claims["sub"] == result["account"]["id"]
    assert claims["staff"] == {result["business"]["id"]: "owner"}

    registered = await clients_api.outbox_events("clients.account_registered.v1")
    created = await clients_api.outbox_events("clients.business_created.v1")
    assert len(registered) == 1 and len(created) == 1
    assert registered[0]["email"] == "casey@example.com"
    assert registered[0]["verification_token"]
    assert registered[0]["business_id"] == result["business"]["id"]
    assert created[0]["slug"] == "casey-coaching"
    assert registered[0]["correlation_id"], "events carry the request's correlation id"


async def test_same_business_name_gets_a_distinct_slug(clients_api: ClientsApi) -> None:
    first = await clients_api.signup("one@example.com")
    second = await clients_api.signup("two@example.com")
    assert first["business"]["slug"] == "casey-coaching"
    assert second["business"]["slug"] == "casey-coaching-2"


@pytest.mark.parametrize("email", ["coach@example.com", "COACH@example.com", " coach@EXAMPLE.com"])
async def test_duplicate_email_is_409_case_insensitively(
    clients_api: ClientsApi, email: str
) -> None:
    await clients_api.signup("coach@example.com")
    response = await clients_api.http.post(
        f"{API}/signup",
        json={
            "name": "B",
            "email": email,
            "password": "another long passphrase",
            "business_name": "B",
        },
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert await count(clients_api, models.Account) == 1


async def test_concurrent_signups_with_one_email_make_one_account(clients_api: ClientsApi) -> None:
    body = {
        "name": "Race",
        "email": "race@example.com",
        "password": "racing to sign up first",
        "business_name": "Race",
    }
    responses = await asyncio.gather(
        *(clients_api.http.post(f"{API}/signup", json=body) for _ in range(4))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert await count(clients_api, models.Account) == 1
    assert await count(clients_api, models.Business) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@b@c.com"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 129}, "password"),
        ({"password": "password123"}, "password"),
        ({"password": "qwertyuiop"}, "password"),
        ({"password": "Sunshine2024!"}, "password"),
        ({"name": "   "}, "name"),
        ({"name": "Evil\r\nBcc: victim@example.com"}, "name"),
        ({"business_name": ""}, "business_name"),
        ({"role": "admin"}, "role"),
        ({"business_id": "00000000-0000-0000-0000-000000000000"}, "business_id"),
    ],
)
async def test_bad_signup_input_is_422_naming_the_field_and_changes_nothing(
    clients_api: ClientsApi, change: dict[str, str], field: str
) -> None:
    body = {
        "name": "Casey",
        "email": "casey@example.com",
        "password": "a long unusual passphrase",
        "business_name": "Casey Co",
        **change,
    }
    response = await clients_api.http.post(f"{API}/signup", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "/problems/validation-error"
    assert field in [e["field"] for e in problem["errors"]]
    assert await count(clients_api, models.Account) == 0
    assert await count(clients_api, models.outbox) == 0


# -- login, sessions ----------------------------------------------------------


async def test_login_wrong_password_and_unknown_email_answer_alike(clients_api: ClientsApi) -> None:
    await clients_api.signup("coach@example.com")
    wrong = await clients_api.http.post(
        f"{API}/sessions", json={"email": "coach@example.com", "password": "wrong password!"}
    )
    unknown = await clients_api.http.post(
        f"{API}/sessions", json={"email": "nobody@example.com", "password": "wrong password!"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    ok = await clients_api.http.post(
        f"{API}/sessions",
        json={"email": "COACH@example.com", "password": "a long unusual passphrase"},
    )
    assert ok.status_code == 201


async def test_session_token_exchange_and_logout(clients_api: ClientsApi) -> None:
    result = await clients_api.signup()
    session = {"session_token": result["session_token"]}
    exchanged = await clients_api.http.post(f"{API}/sessions/token", json=session)
    assert exchanged.status_code == 200
    me = await clients_api.http.get(f"{API}/me", headers=bearer(exchanged.json()["access_token"]))
    assert me.status_code == 200
    assert me.json()["businesses"][0]["name"] == "Casey Coaching"

    assert (await clients_api.http.post(f"{API}/sessions/revoke", json=session)).status_code == 204
    again = await clients_api.http.post(f"{API}/sessions/token", json=session)
    assert again.status_code == 401


async def test_me_requires_a_token(clients_api: ClientsApi) -> None:
    response = await clients_api.http.get(f"{API}/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_bad_tokens_are_refused_by_the_service(clients_api: ClientsApi) -> None:
    await clients_api.signup()
    jwks = (await clients_api.http.get(f"{API}/.well-known/jwks.json")).json()["keys"][0]
    key = load_private_key("", clients_api.settings.secret_key)
    for kind, token in tokens.broken_variants(key, jwks["kid"], jwks["x"]).items():
        response = await clients_api.http.get(f"{API}/me", headers=bearer(token))
        assert response.status_code == 401, kind
    good = tokens.valid(key, jwks["kid"])
    # A validly signed token for an account that does not exist is still refused.
    assert (await clients_api.http.get(f"{API}/me", headers=bearer(good))).status_code == 401


# -- magic links --------------------------------------------------------------


async def magic_token(api: ClientsApi, email: str, next_path: str | None = None) -> str:
    response = await api.http.post(f"{API}/magic-links", json={"email": email, "next": next_path})
    assert response.status_code == 202
    return str((await api.outbox_events("clients.magic_link_requested.v1"))[-1]["token"])


async def test_magic_link_logs_in_once(clients_api: ClientsApi) -> None:
    await clients_api.signup("coach@example.com")
    token = await magic_token(clients_api, "Coach@Example.com", "/account")
    first = await clients_api.http.post(f"{API}/magic-links/consume", json={"token": token})
    assert first.status_code == 201
    assert first.json()["next"] == "/account"
    assert first.json()["account"]["email_verified"] is True
    second = await clients_api.http.post(f"{API}/magic-links/consume", json={"token": token})
    assert second.status_code == 410


async def test_magic_link_drops_a_foreign_next(clients_api: ClientsApi) -> None:
    await clients_api.signup("coach@example.com")
    token = await magic_token(clients_api, "coach@example.com", "//evil.example/x")
    result = await clients_api.http.post(f"{API}/magic-links/consume", json={"token": token})
    assert result.json()["next"] is None


async def test_magic_link_expires(clients_api: ClientsApi) -> None:
    await clients_api.signup("coach@example.com")
    token = await magic_token(clients_api, "coach@example.com")
    async with clients_api.engine.begin() as conn:
        await conn.execute(
            update(models.OneTimeToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    response = await clients_api.http.post(f"{API}/magic-links/consume", json={"token": token})
    assert response.status_code == 410


async def test_magic_link_for_unknown_email_answers_the_same_and_sends_nothing(
    clients_api: ClientsApi,
) -> None:
    response = await clients_api.http.post(f"{API}/magic-links", json={"email": "who@example.com"})
    assert response.status_code == 202
    assert await clients_api.outbox_events("clients.magic_link_requested.v1") == []


async def test_magic_link_lifetime_is_at_most_15_minutes(clients_api: ClientsApi) -> None:
    clients_api.settings.magic_link_ttl_minutes = 600  # misconfigured: still capped
    await clients_api.signup("coach@example.com")
    await magic_token(clients_api, "coach@example.com")
    async with clients_api.engine.connect() as conn:
        row = (
            await conn.execute(
                select(models.OneTimeToken).where(models.OneTimeToken.purpose == "magic_link")
            )
        ).one()
    assert row.expires_at - row.created_at <= timedelta(minutes=15, seconds=1)


async def test_concurrent_consumes_of_one_magic_link_log_in_once(clients_api: ClientsApi) -> None:
    await clients_api.signup("coach@example.com")
    token = await magic_token(clients_api, "coach@example.com")
    responses = await asyncio.gather(
        *(
            clients_api.http.post(f"{API}/magic-links/consume", json={"token": token})
            for _ in range(3)
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 410, 410]


# -- password reset and verification -----------------------------------------


async def test_password_reset(clients_api: ClientsApi) -> None:
    signed_up = await clients_api.signup("coach@example.com")
    await clients_api.http.post(f"{API}/password-resets", json={"email": "coach@example.com"})
    token = (await clients_api.outbox_events("clients.password_reset_requested.v1"))[0]["token"]

    weak = await clients_api.http.post(
        f"{API}/password-resets/consume", json={"token": token, "password": "password1"}
    )
    assert weak.status_code == 422
    assert weak.json()["errors"][0]["field"] == "password"

    done = await clients_api.http.post(
        f"{API}/password-resets/consume",
        json={"token": token, "password": "a brand new passphrase"},
    )
    assert done.status_code == 201, "a refused password must not use up the token"
    old_session = await clients_api.http.post(
        f"{API}/sessions/token", json={"session_token": signed_up["session_token"]}
    )
    assert old_session.status_code == 401, "a reset ends the other sessions"
    login = await clients_api.http.post(
        f"{API}/sessions", json={"email": "coach@example.com", "password": "a brand new passphrase"}
    )
    assert login.status_code == 201
    reuse = await clients_api.http.post(
        f"{API}/password-resets/consume", json={"token": token, "password": "yet another phrase!"}
    )
    assert reuse.status_code == 410


async def test_email_verification_and_resend(clients_api: ClientsApi) -> None:
    result = await clients_api.signup("coach@example.com")
    token = (await clients_api.outbox_events("clients.account_registered.v1"))[0][
        "verification_token"
    ]
    resend = await clients_api.http.post(
        f"{API}/email-verifications", headers=bearer(result["access_token"])
    )
    assert resend.json()["status"] == "accepted"
    assert len(await clients_api.outbox_events("clients.email_verification_requested.v1")) == 1

    verified = await clients_api.http.post(
        f"{API}/email-verifications/consume", json={"token": token}
    )
    assert verified.status_code == 200 and verified.json()["email_verified"] is True
    again = await clients_api.http.post(f"{API}/email-verifications/consume", json={"token": token})
    assert again.status_code == 410
    resend = await clients_api.http.post(
        f"{API}/email-verifications", headers=bearer(result["access_token"])
    )
    assert resend.json()["status"] == "unchanged"


async def test_health_and_readiness(clients_api: ClientsApi) -> None:
    assert (await clients_api.http.get("/healthz")).json() == {"status": "ok"}
    ready = await clients_api.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": True, "broker": True}
