"""The email counter (clientele_emails_total) of the sender, by outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import REGISTRY

from notifications.emails.sender import EmailSender
from tests.notifications import events
from tests.notifications.conftest import Notifications, SmtpServer


def emails(outcome: str) -> float:
    return REGISTRY.get_sample_value("clientele_emails_total", {"outcome": outcome}) or 0.0


async def queue(harness: Notifications, n: int) -> None:
    context = {"name": f"N{n}", "verify_url": "https://app.example.test/v", "expires_in": "1h"}
    await harness.queue(
        events.verification_requested(), "verify_email", f"person{n}@example.com", **context
    )


async def test_sent_retried_and_failed_emails_are_counted(
    make_notifications: Callable[..., Awaitable[Notifications]], smtp_server: SmtpServer
) -> None:
    # A deferred email stays deferred for the rest of the test.
    notifications = await make_notifications(smtp_server, email_retry_base_seconds=60)
    before = {o: emails(o) for o in ("sent", "retried", "failed")}
    sender = EmailSender(notifications.sessionmaker, notifications.settings)

    await queue(notifications, 1)
    assert await sender.send_batch() == 1
    assert emails("sent") - before["sent"] == 1

    notifications.smtp.handler.refuse("421 4.3.2 Try again later", times=1)
    await queue(notifications, 2)
    assert await sender.send_batch() == 1
    assert emails("retried") - before["retried"] == 1

    notifications.smtp.handler.refuse("550 5.1.1 No such user", times=1)
    await queue(notifications, 3)
    assert await sender.send_batch() == 1
    assert emails("failed") - before["failed"] == 1
    assert emails("sent") - before["sent"] == 1
