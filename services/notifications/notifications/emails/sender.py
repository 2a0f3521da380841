"""SMTP delivery of queued emails: the worker's sending loop.

A batch of due rows is claimed in one short transaction (status 'sending',
a lease in ``locked_until``, attempts + 1; SKIP LOCKED, so two senders never
hold the same row). The batch goes over one SMTP connection, and each
outcome is stored in a transaction of its own right after its send:

- accepted: 'sent';
- refused for now (4xx, connection trouble, timeouts): back to 'queued'
  with exponential backoff, until ``email_max_attempts``;
- refused for good (5xx to RCPT or DATA, an invalid address): 'failed'.

A sender that dies mid-batch leaves rows in 'sending'; once their lease
lapses another sender claims them again. That resend carries the same
Message-ID (it derives from the email id), so it is recognisable as the
same email. Nothing is ever dropped.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib
from email_validator import EmailNotValidError, validate_email
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.aio import wait_for_stop
from kit.db import is_connection_error, utcnow
from kit.logging import get_logger
from kit.metrics import touch
from kit.validation import normalize_email
from notifications.config import NotificationsSettings
from notifications.emails.attachments import attach_all
from notifications.emails.headers import MESSAGE_POLICY, InvalidHeaders, decode_headers
from notifications.emails.rendering import SUBJECT_MAX_LENGTH, header_text
from notifications.emails.repository import ClaimedEmail, EmailRepository

log = get_logger(__name__)

CLAIM_LEASE = timedelta(minutes=2)

EMAILS = Counter(
    "clientele_emails",
    "Email delivery outcomes: sent, retried (deferred with backoff), failed (for good).",
    ["outcome"],
)
touch(EMAILS, ("sent",), ("retried",), ("failed",))


def message_id_for(email_id: uuid.UUID) -> str:
    return f"<{email_id}@clientele>"


class ServerUnreachable(Exception):
    """No usable connection to the mail server: nothing in the batch can be sent now."""


class InvalidRecipient(ValueError):
    pass


def build_message(email: ClaimedEmail, settings: NotificationsSettings) -> tuple[EmailMessage, str]:
    """The message and its envelope recipient.

    Only the recipient and the subject come from users; both are checked
    here again although they were checked when queued, because a header
    with a line break in it would let its author add headers (or recipients).
    """
    try:
        address = normalize_email(email.recipient)
        # The envelope takes the ASCII form (IDNA domain) when there is one.
        checked = validate_email(address, check_deliverability=False)
    except (ValueError, EmailNotValidError) as exc:
        raise InvalidRecipient(f"invalid recipient address: {exc}") from exc
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = settings.mail_from
    message["To"] = address
    message["Subject"] = header_text(email.subject, SUBJECT_MAX_LENGTH)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = message_id_for(email.id)
    # Tells mail servers and vacation responders this was sent by a program (RFC 3834).
    message["Auto-Submitted"] = "auto-generated"
    # This email's own headers (List-Unsubscribe...): allowed names, one line each.
    for name, value in decode_headers(email.extra_headers).items():
        message[name] = value
    message.set_content(email.text_body)
    message.add_alternative(email.html_body, subtype="html")
    # Files it carries (an appointment's .ics), checked again: none for most emails.
    attach_all(message, email.attachments)
    return message, checked.ascii_email or checked.normalized


def describe(exc: BaseException) -> str:
    """A short, stable error text for logs and ``last_error`` (never message content)."""
    if isinstance(exc, InvalidRecipient | InvalidHeaders):
        return str(exc)[:500]
    if isinstance(exc, ServerUnreachable) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {exc.code} {exc.message}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def is_permanent(exc: BaseException) -> bool:
    """True when trying again cannot help: the server refused this message for good.

    Only 5xx replies to RCPT or DATA count, and what can never be sent (a bad
    address, SMTPUTF8 unsupported). A 5xx to MAIL FROM or AUTH is our own
    configuration, which an operator fixes: those are retried.
    """
    if isinstance(exc, InvalidRecipient | InvalidHeaders | aiosmtplib.SMTPNotSupported):
        return True
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(r.code >= 500 for r in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return exc.code >= 500
    return False


class SmtpConnection:
    """One connection to the mail server for a batch: opened when first needed, and
    opened again when the server closed it (it does so after a 421)."""

    def __init__(self, settings: NotificationsSettings) -> None:
        self.settings = settings
        self._smtp: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        settings = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            timeout=settings.smtp_timeout,
            start_tls=settings.smtp_starttls,
        )
        try:
            await smtp.connect()
            if settings.smtp_username:
                await smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise ServerUnreachable(describe(exc)) from exc
        return smtp

    async def send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        if self._smtp is None or not self._smtp.is_connected:
            self._smtp = await self._connect()
        # Explicit recipients: the envelope never comes from the headers.
        await self._smtp.send_message(message, sender=sender, recipients=[recipient])

    async def close(self) -> None:
        if self._smtp is None or not self._smtp.is_connected:
            return
        try:
            await self._smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            self._smtp.close()


class EmailSender:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: NotificationsSettings,
        *,
        lease: timedelta = CLAIM_LEASE,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.lease = lease
        # No send may start so late that it could outlive the lease.
        self.lease_margin = min(lease / 2, timedelta(seconds=5 * settings.smtp_timeout))

    async def run(self, stop: asyncio.Event) -> None:
        log.info("email_sender_started", batch_size=self.settings.sender_batch_size)
        failures = 0
        while not stop.is_set():
            try:
                claimed = await self.send_batch(stop)
                failures = 0
            except Exception as exc:  # the database is away: back off and try again
                failures += 1
                log.warning("email_sender_error", error=describe(exc), failures=failures)
                await wait_for_stop(stop, min(0.5 * failures, 5.0))
                continue
            if claimed < self.settings.sender_batch_size:
                await wait_for_stop(stop, self.settings.sender_poll_interval)

    async def send_batch(self, stop: asyncio.Event | None = None) -> int:
        """Claim and send one batch. Returns how many rows were claimed."""
        now = utcnow()
        lease = now + self.lease
        async with self.sessionmaker() as session, session.begin():
            batch = await EmailRepository(session).claim_due(
                now, self.settings.sender_batch_size, lease
            )
        if not batch:
            return 0
        last_start = time.monotonic() + (self.lease - self.lease_margin).total_seconds()
        connection = SmtpConnection(self.settings)
        try:
            for index, email in enumerate(batch):
                if (stop is not None and stop.is_set()) or time.monotonic() > last_start:
                    await self._release(batch[index:])
                    break
                try:
                    await self._deliver(connection, email)
                except ServerUnreachable as exc:
                    for waiting in batch[index:]:
                        await self._attempt_failed(waiting, exc)
                    break
        finally:
            await connection.close()
        return len(batch)

    async def _deliver(self, connection: SmtpConnection, email: ClaimedEmail) -> None:
        if email.attempts > self.settings.email_max_attempts:
            # Only a row whose sender died during its last allowed attempt gets here.
            await self._give_up(email, "no attempts left: the last one did not finish")
            return
        try:
            message, recipient = build_message(email, self.settings)
            await connection.send(message, self.settings.mail_from_address, recipient)
        except ServerUnreachable:
            raise
        except Exception as exc:
            await self._attempt_failed(email, exc)
            return
        await self._store(
            email, lambda repo: repo.mark_sent(email, utcnow(), str(message["Message-ID"]))
        )
        EMAILS.labels("sent").inc()
        log.info(
            "email_sent", email_id=str(email.id), template=email.template, attempts=email.attempts
        )

    async def _release(self, untried: list[ClaimedEmail]) -> None:
        # Handed back at once (on shutdown, or when the lease runs short) instead of
        # waiting out the lease; the claim does not count as an attempt.
        await self._store(untried[0], lambda repo: repo.release(untried))
        log.info("emails_released", count=len(untried))

    def retry_delay(self, attempts: int) -> float:
        settings = self.settings
        delay = min(
            settings.email_retry_base_seconds * 2.0 ** min(attempts - 1, 32),
            settings.email_retry_max_seconds,
        )
        # Jitter only spreads retries out; it has nothing to do with security.
        return delay * random.uniform(1.0, 1.1)  # noqa: S311

    async def _attempt_failed(self, email: ClaimedEmail, exc: BaseException) -> None:
        error = describe(exc)
        if is_permanent(exc):
            await self._give_up(email, error)
            return
        if email.attempts >= self.settings.email_max_attempts:
            await self._give_up(email, f"gave up after {email.attempts} attempts: {error}")
            return
        delay = self.retry_delay(email.attempts)
        next_attempt_at = utcnow() + timedelta(seconds=delay)
        await self._store(email, lambda repo: repo.reschedule(email, next_attempt_at, error))
        EMAILS.labels("retried").inc()
        log.warning(
            "email_delivery_deferred",
            email_id=str(email.id),
            template=email.template,
            attempts=email.attempts,
            retry_in_s=round(delay, 2),
            error=error,
        )

    async def _give_up(self, email: ClaimedEmail, error: str) -> None:
        await self._store(email, lambda repo: repo.mark_failed(email, error))
        EMAILS.labels("failed").inc()
        log.error(
            "email_delivery_failed",
            email_id=str(email.id),
            template=email.template,
            attempts=email.attempts,
            error=error,
        )

    async def _store(
        self, email: ClaimedEmail, change: Callable[[EmailRepository], Awaitable[bool | None]]
    ) -> None:
        """Write an outcome in its own transaction.

        The mail server has already answered, so losing the outcome would mean
        sending again: while the database is unreachable, keep trying until the
        lease runs out (after that the row may belong to another sender).
        """
        pause = 0.5
        while True:
            try:
                async with self.sessionmaker() as session, session.begin():
                    held = await change(EmailRepository(session))
                break
            except Exception as exc:
                if not is_connection_error(exc) or _lapsed(email.lease, pause):
                    raise
                log.warning(
                    "email_outcome_not_stored_retrying",
                    email_id=str(email.id),
                    retry_in_s=pause,
                    error=describe(exc),
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)
        if held is False:
            log.warning("email_lease_lost", email_id=str(email.id), template=email.template)


def _lapsed(lease: datetime, within_seconds: float) -> bool:
    return utcnow() + timedelta(seconds=within_seconds) >= lease
