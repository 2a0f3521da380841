"""The Stripe webhook counter (clientele_stripe_webhooks_total) by outcome."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.payments.conftest import Payments, sign, stripe_event


def webhooks(outcome: str) -> float:
    return REGISTRY.get_sample_value("clientele_stripe_webhooks_total", {"outcome": outcome}) or 0.0


async def test_webhooks_are_counted_by_outcome(payments: Payments) -> None:
    before = {o: webhooks(o) for o in ("stored", "duplicate", "bad_signature", "db_unavailable")}
    payload = stripe_event("payment_intent.succeeded", {"id": "pi_m", "object": "payment_intent"})

    assert (await payments.webhook(payload, None)).status_code == 400
    assert (await payments.webhook(payload, sign(payload, "whsec_someone_else"))).status_code == 400
    assert webhooks("bad_signature") - before["bad_signature"] == 2
    assert webhooks("stored") == before["stored"]

    assert (await payments.webhook(payload, sign(payload))).status_code == 200
    assert (await payments.webhook(payload, sign(payload))).status_code == 200
    assert webhooks("stored") - before["stored"] == 1
    assert webhooks("duplicate") - before["duplicate"] == 1
    assert webhooks("db_unavailable") == before["db_unavailable"]

    scraped = await payments.http.get("/metrics")
    assert scraped.status_code == 200
    assert 'clientele_stripe_webhooks_total{outcome="bad_signature"}' in scraped.text
    assert 'route="/api/v1/payments/webhooks/stripe"' in scraped.text
