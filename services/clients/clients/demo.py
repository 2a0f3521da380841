"""A demo coach for local runs: ``python -m clients.demo EMAIL PASSWORD``.

Signs up through the same service code as the API (so the welcome email and
events flow as for anyone); does nothing when the account already exists.
"""

from __future__ import annotations

import asyncio
import sys

from clients import models
from clients.config import ClientsSettings
from clients.identity.repository import IdentityRepository
from clients.identity.schemas import SignupRequest
from clients.identity.service import IdentityService
from clients.identity.signing import TokenSigner, load_private_key
from kit.db import create_engine, create_sessionmaker
from kit.messaging import Outbox


async def ensure_demo_coach(settings: ClientsSettings, email: str, password: str) -> bool:
    """True when the account was created now."""
    engine = create_engine(settings.database_url)
    signer = TokenSigner(
        load_private_key(settings.jwt_private_key, settings.secret_key),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            if await IdentityRepository(session).account_by_email(email.lower()) is not None:
                return False
            service = IdentityService(session, settings, signer, Outbox(models.outbox))
            await service.signup(
                SignupRequest(
                    name="Demo Coach",
                    email=email,
                    password=password,
                    business_name="Demo Coaching",
                ),
                user_agent="demo-seed",
            )
            return True
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(ensure_demo_coach(ClientsSettings(), sys.argv[1], sys.argv[2]))
