"""The notifications api process: ``uvicorn --factory notifications.main:build_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kit.auth import TokenVerifier
from kit.http import create_app
from kit.logging import configure_logging
from kit.runtime import ServiceContext
from notifications.campaigns import endpoints as campaigns
from notifications.config import NotificationsSettings
from notifications.emails import endpoints as emails
from notifications.emails.rendering import EmailRenderer
from notifications.sequences import endpoints as sequences
from notifications.unsubscribes import endpoints as unsubscribes
from notifications.unsubscribes.tokens import UnsubscribeTokens

API_PREFIX = "/api/v1/notifications"


def build_app(settings: NotificationsSettings | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    configure_logging("notifications-api", settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = ServiceContext.create(settings, "notifications-api")
        app.state.settings = settings
        app.state.engine = context.engine
        app.state.sessionmaker = context.sessionmaker
        app.state.renderer = EmailRenderer()
        app.state.unsubscribe_tokens = UnsubscribeTokens(settings.secret_key)
        # No app.state.broker: the api neither publishes nor consumes, so its
        # readiness must not depend on RabbitMQ.
        app.state.token_verifier = TokenVerifier(
            issuer=settings.jwt_issuer, audience=settings.jwt_audience, jwks_url=settings.jwks_url
        )
        try:
            yield
        finally:
            await app.state.token_verifier.close()
            await context.close()

    app = create_app(title="Clientele notifications service", lifespan=lifespan)
    app.include_router(emails.router, prefix=API_PREFIX)
    app.include_router(campaigns.router, prefix=API_PREFIX)
    app.include_router(unsubscribes.router, prefix=API_PREFIX)
    app.include_router(sequences.router, prefix=API_PREFIX)
    return app
