"""The payments api process: ``uvicorn --factory payments.main:build_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kit.auth import TokenVerifier
from kit.catalog_quotes import CatalogClient
from kit.http import create_app
from kit.logging import configure_logging
from kit.messaging import Outbox
from kit.runtime import ServiceContext
from payments import models
from payments.activity import endpoints as activity
from payments.config import PaymentsSettings
from payments.orders import endpoints as orders
from payments.refunds import endpoints as refunds
from payments.stripe_gateway.gateway import StripeGateway
from payments.subscriptions import endpoints as subscriptions
from payments.webhooks import endpoints as webhooks

API_PREFIX = "/api/v1/payments"


def stripe_gateway(settings: PaymentsSettings) -> StripeGateway:
    return StripeGateway(
        settings.stripe_api_key,
        settings.stripe_api_base,
        publishable_key=settings.stripe_publishable_key,
        js_url=settings.stripe_js_url,
    )


def build_app(settings: PaymentsSettings | None = None) -> FastAPI:
    settings = settings or PaymentsSettings()
    configure_logging("payments-api", settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = ServiceContext.create(settings, "payments-api")
        app.state.settings = settings
        app.state.engine = context.engine
        app.state.sessionmaker = context.sessionmaker
        # Events go through the outbox (the worker relays them): the api never talks
        # to RabbitMQ, so its readiness does not depend on it.
        app.state.outbox = Outbox(models.outbox)
        app.state.token_verifier = TokenVerifier(
            issuer=settings.jwt_issuer, audience=settings.jwt_audience, jwks_url=settings.jwks_url
        )
        app.state.catalog = CatalogClient(settings.catalog_url, settings.catalog_timeout_seconds)
        app.state.stripe = stripe_gateway(settings)
        try:
            yield
        finally:
            await app.state.stripe.close()
            await app.state.catalog.close()
            await app.state.token_verifier.close()
            await context.close()

    app = create_app(title="Clientele payments service", lifespan=lifespan)
    routers = (orders.router, subscriptions.router, refunds.router, activity.router)
    for router in (*routers, webhooks.router):
        app.include_router(router, prefix=API_PREFIX)
    return app
