"""Settings from the environment, and the template environment's guarantees."""

from __future__ import annotations

from datetime import timedelta

import pytest
from jinja2 import UndefinedError
from pydantic import ValidationError

from notifications.config import NotificationsSettings
from notifications.emails.rendering import EmailRenderer, describe_duration, one_line

SHARED = ["SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_STARTTLS"]
SHARED += ["SMTP_TIMEOUT", "MAIL_FROM", "PUBLIC_BASE_URL"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SHARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLIENTELE_DEV", "1")
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = NotificationsSettings()
    assert (settings.port, settings.database_url) == (
        8102,
        "sqlite+aiosqlite:///var/notifications.db",
    )
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_starttls) == (
        "localhost",
        1025,
        False,
    )
    assert settings.smtp_timeout == 10.0 and settings.smtp_username == ""
    assert settings.mail_from == "Clientele <no-reply@clientele.localhost>"
    assert settings.mail_from_address == "no-reply@clientele.localhost"
    assert (settings.email_max_attempts, settings.email_retry_base_seconds) == (30, 2.0)
    assert (settings.email_retry_max_seconds, settings.sender_batch_size) == (600, 50)
    assert settings.sender_poll_interval == 0.2
    assert settings.sender_lease_seconds == 120


def test_shared_settings_are_unprefixed_and_own_settings_prefixed(
    clean_env: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "SMTP_HOST": "mail.example.test",
        "SMTP_PORT": "2525",
        "SMTP_USERNAME": "mailer",
        "SMTP_PASSWORD": "hunter2-very-secret",
        "SMTP_STARTTLS": "true",
        "SMTP_TIMEOUT": "3.5",
        "MAIL_FROM": "Team <team@example.test>",
        "PUBLIC_BASE_URL": "https://app.example.test/",
        "NOTIFICATIONS_EMAIL_MAX_ATTEMPTS": "7",
        "NOTIFICATIONS_SENDER_BATCH_SIZE": "9",
        "NOTIFICATIONS_PORT": "9102",
    }.items():
        clean_env.setenv(name, value)
    settings = NotificationsSettings()
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_starttls) == (
        "mail.example.test",
        2525,
        True,
    )
    assert settings.smtp_password.get_secret_value() == "hunter2-very-secret"
    assert "hunter2" not in repr(settings), "the password never shows in a repr or a log"
    assert (settings.smtp_username, settings.smtp_timeout) == ("mailer", 3.5)
    assert settings.mail_from_address == "team@example.test"
    assert settings.public_url("/account") == "https://app.example.test/account"
    assert (settings.email_max_attempts, settings.sender_batch_size, settings.port) == (7, 9, 9102)


@pytest.mark.parametrize(
    "mail_from", ["Team <team@example.test>\r\nBcc: spy@evil.test", "no address", ""]
)
def test_mail_from_must_be_one_address(clean_env: pytest.MonkeyPatch, mail_from: str) -> None:
    clean_env.setenv("MAIL_FROM", mail_from)
    with pytest.raises(ValidationError):
        NotificationsSettings()


WELCOME = {
    "name": "<script>alert(1)</script>",
    "business_name": "Bob & Co",
    "verify_url": "https://app.example.test/verify-email?token=a&b=c",
    "verify_expires_in": "48 hours",
    "account_url": "https://app.example.test/account",
}


def test_html_is_escaped_and_text_is_not() -> None:
    rendered = EmailRenderer().render("welcome", WELCOME)
    assert "<script>" not in rendered.html_body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html_body
    assert "Bob &amp; Co" in rendered.html_body
    assert 'href="https://app.example.test/verify-email?token=a&amp;b=c"' in rendered.html_body
    assert "Hi <script>alert(1)</script>," in rendered.text_body
    assert "Bob & Co" in rendered.text_body
    assert rendered.subject == "Welcome to Clientele, <script>alert(1)</script>"


def test_a_missing_variable_is_an_error_not_a_blank() -> None:
    with pytest.raises(UndefinedError):
        EmailRenderer().render("welcome", {k: v for k, v in WELCOME.items() if k != "account_url"})


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(minutes=15) - timedelta(milliseconds=3), "15 minutes"),
        (timedelta(minutes=60), "60 minutes"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(hours=2), "2 hours"),
        (timedelta(hours=48), "48 hours"),
        (timedelta(minutes=90), "90 minutes"),
    ],
)
def test_describe_duration(duration: timedelta, text: str) -> None:
    assert describe_duration(duration) == text


def test_one_line_removes_every_kind_of_line_break() -> None:
    assert one_line("a\r\nb\nc\rd\x00e\u2028f\u2029g\x85h\ti  j ") == "a b c d e f g h i j"
