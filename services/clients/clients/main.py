"""The clients api process: ``uvicorn --factory clients.main:build_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from clients import models
from clients.appointments import endpoints as appointments
from clients.book import endpoints as book
from clients.config import ClientsSettings
from clients.forms import endpoints as forms
from clients.groups import endpoints as groups
from clients.identity import endpoints as identity
from clients.identity.signing import TokenSigner, load_private_key
from clients.invitations import endpoints as invitations
from clients.purchases import endpoints as purchases
from kit.auth import TokenVerifier
from kit.catalog_quotes import CatalogClient
from kit.http import create_app
from kit.logging import configure_logging
from kit.messaging import Outbox
from kit.runtime import ServiceContext

API_PREFIX = "/api/v1/clients"


def build_app(settings: ClientsSettings | None = None) -> FastAPI:
    settings = settings or ClientsSettings()
    configure_logging("clients-api", settings.log_level, settings.log_format)
    signer = TokenSigner(
        load_private_key(settings.jwt_private_key, settings.secret_key),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = ServiceContext.create(settings, "clients-api")
        app.state.settings = settings
        app.state.engine = context.engine
        app.state.sessionmaker = context.sessionmaker
        app.state.broker = context.broker
        app.state.signer = signer
        app.state.outbox = Outbox(models.outbox)
        # Appointments read offerings (and who may book them) from the catalog's quotes.
        app.state.catalog = CatalogClient(settings.catalog_url, settings.catalog_timeout_seconds)
        # This service signs the tokens, so it verifies them with its own keys.
        app.state.token_verifier = TokenVerifier(
            issuer=settings.jwt_issuer, audience=settings.jwt_audience, jwks=signer.jwks()
        )
        yield
        await app.state.catalog.close()
        await context.close()

    app = create_app(title="Clientele clients service", lifespan=lifespan)
    for router in (
        identity.router,
        book.router,
        groups.router,
        invitations.router,
        purchases.router,
        appointments.router,
        forms.router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    return app
