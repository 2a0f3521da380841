"""The SMTP sink as a real process: mail goes in over SMTP and is read back over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest

PDF = b"%PDF-1.4\n% a tiny stand-in for an invoice\n" * 20
TEXT = (
    "Hello Robin,\n\n"
    "Confirm your address: https://app.test/verify-email?token=abc123.\n"
    "Stop these emails: https://app.test/unsubscribe\n"
)
HTML = (
    '<p>Hello Robin,</p><p><a href="https://app.test/verify-email?token=abc123">Confirm</a>'
    ' &middot; <a href="https://app.test/help?topic=a&amp;lang=en">Help</a>'
    ' &middot; <a href="mailto:help@clientele.test">Write to us</a></p>'
)
LINKS = [
    "https://app.test/verify-email?token=abc123",
    "https://app.test/help?topic=a&lang=en",
    "https://app.test/unsubscribe",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def welcome(to: str = "robin@example.test", *, attachment: bool = False) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Clientele <no-reply@clientele.test>"
    msg["To"] = to
    msg["Subject"] = "Welcome to Clientele, Robin"
    msg["Message-ID"] = "<welcome-1@clientele.test>"
    msg.set_content(TEXT)
    msg.add_alternative(HTML, subtype="html")
    if attachment:
        msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg


class Sink:
    """One ``python -m devtools.mailsink`` process; can be stopped and started again."""

    def __init__(self, tmp_path: Path) -> None:
        self.directory = tmp_path / "mail"
        self.log_path = tmp_path / "mailsink.log"
        self.smtp_port = free_port()
        self.http_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.process: asyncio.subprocess.Process | None = None
        self.http = aiohttp.ClientSession()

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "devtools.mailsink",
                "--host", "127.0.0.1",
                "--smtp-port", str(self.smtp_port),
                "--http-port", str(self.http_port),
                "--dir", str(self.directory),
                stdout=log, stderr=log, cwd=self.directory.parent,
                env={**os.environ, "LOG_LEVEL": "INFO", "LOG_FORMAT": "json"},
            )  # fmt: skip
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            if self.process.returncode is not None:
                raise AssertionError(f"mailsink exited early:\n{self.log_path.read_text()}")
            try:
                if await self.get("/healthz") == {"status": "ok"}:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"mailsink not healthy after 10 s:\n{self.log_path.read_text()}")

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
                raise
        assert self.process.returncode is not None
        return self.process.returncode

    async def request(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        async with self.http.request(method, f"{self.base_url}{path}", **kwargs) as response:
            await response.read()
            return response

    async def get(self, path: str) -> Any:
        async with self.http.get(f"{self.base_url}{path}") as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def send(self, message: EmailMessage | bytes, **kwargs: Any) -> Any:
        return await aiosmtplib.send(
            message, hostname="127.0.0.1", port=self.smtp_port, timeout=5, **kwargs
        )

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[Sink]:
    running = Sink(tmp_path)
    try:
        await running.start()
        yield running
        assert await running.stop() == 0, "SIGTERM ends the sink cleanly"
    finally:
        if running.process is not None and running.process.returncode is None:
            running.process.kill()
            await running.process.wait()
        await running.http.close()


def refusal_codes(exc: Exception) -> list[int]:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return [refused.code for refused in exc.recipients]
    assert isinstance(exc, aiosmtplib.SMTPResponseException), repr(exc)
    return [exc.code]


# -- receiving and listing -----------------------------------------------------------


async def test_accepted_message_is_listed_with_its_summary_and_kept_on_disk(sink: Sink) -> None:
    before = datetime.now().astimezone()
    await sink.send(welcome())

    [summary] = await sink.get("/messages")
    assert set(summary) == {
        "id", "received_at", "mail_from", "rcpt_tos", "subject", "from", "to", "message_id",
    }  # fmt: skip
    assert summary["mail_from"] == "no-reply@clientele.test"
    assert summary["rcpt_tos"] == ["robin@example.test"]
    assert summary["subject"] == "Welcome to Clientele, Robin"
    assert summary["from"] == "Clientele <no-reply@clientele.test>"
    assert summary["to"] == "robin@example.test"
    assert summary["message_id"] == "<welcome-1@clientele.test>"
    received = datetime.fromisoformat(summary["received_at"])
    assert received.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= received <= datetime.now().astimezone()

    eml = sink.directory / f"{summary['id']}.eml"
    assert b"Subject: Welcome to Clientele, Robin" in eml.read_bytes()
    envelope = json.loads((sink.directory / f"{summary['id']}.json").read_text())
    assert envelope["id"] == summary["id"]
    assert envelope["mail_from"] == "no-reply@clientele.test"
    assert envelope["rcpt_tos"] == ["robin@example.test"]
    assert envelope["peer"].startswith("127.0.0.1:")

    [line] = [line for line in sink.log_lines() if line["event"] == "mail accepted"]
    assert line["id"] == summary["id"]
    assert line["rcpt_count"] == 1
    assert line["subject"] == "Welcome to Clientele, Robin"
    assert "abc123" not in sink.log_path.read_text(), "the body never reaches the log"
    assert await sink.get("/_control/stats") == {"accepted": 1, "refused": 0}


async def test_full_message_has_headers_bodies_links_and_attachments(sink: Sink) -> None:
    await sink.send(welcome(attachment=True))
    [summary] = await sink.get("/messages")

    full = await sink.get(f"/messages/{summary['id']}")
    assert {k: full[k] for k in summary} == summary
    names = [name for name, _ in full["headers"]]
    assert names[:4] == ["From", "To", "Subject", "Message-ID"]
    assert ["Subject", "Welcome to Clientele, Robin"] in full["headers"]
    assert full["text"] == TEXT
    assert full["html"].strip() == HTML
    assert full["links"] == LINKS
    assert full["attachments"] == [
        {"filename": "invoice.pdf", "content_type": "application/pdf", "size": len(PDF)}
    ]


async def test_plain_text_message_has_no_html_and_no_attachments(sink: Sink) -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.test"
    msg["To"] = "b@example.test"
    msg["Subject"] = "Plain"
    msg.set_content("Only text, see https://app.test/x, and https://app.test/x again.\n")
    await sink.send(msg)
    [summary] = await sink.get("/messages")

    full = await sink.get(f"/messages/{summary['id']}")
    assert full["html"] is None
    assert full["attachments"] == []
    assert full["links"] == ["https://app.test/x"]
    assert full["message_id"] is None


async def test_list_is_newest_first_and_filters_on_envelope_recipients(sink: Sink) -> None:
    await sink.send(welcome("ann@example.test"))
    await sink.send(welcome("bob@example.test"), recipients=["bob@example.test", "cy@example.test"])
    # The To header says ann, but the envelope (what the server delivers to) says dee.
    await sink.send(welcome("ann@example.test"), recipients=["dee@example.test"])

    everything = await sink.get("/messages")
    assert [m["rcpt_tos"] for m in everything] == [
        ["dee@example.test"],
        ["bob@example.test", "cy@example.test"],
        ["ann@example.test"],
    ]
    for address, expected in [
        ("ann@example.test", [["ann@example.test"]]),
        ("CY@Example.TEST", [["bob@example.test", "cy@example.test"]]),
        ("dee@example.test", [["dee@example.test"]]),
        ("example.test", []),  # exact addresses only, not substrings
    ]:
        found = await sink.get(f"/messages?to={address}")
        assert [m["rcpt_tos"] for m in found] == expected, address
    assert [m["id"] for m in await sink.get("/messages?limit=2")] == [
        m["id"] for m in everything[:2]
    ]
    assert (await sink.request("GET", "/messages?limit=-1")).status == 400


async def test_raw_returns_the_bytes_as_received(sink: Sink) -> None:
    raw = welcome(attachment=True).as_bytes(policy=policy.SMTP)
    await sink.send(raw, sender="no-reply@clientele.test", recipients=["robin@example.test"])
    [summary] = await sink.get("/messages")

    async with sink.http.get(f"{sink.base_url}/messages/{summary['id']}/raw") as response:
        assert response.status == 200
        assert response.content_type == "message/rfc822"
        assert await response.read() == raw


async def test_unknown_message_is_404(sink: Sink) -> None:
    for path in ("/messages/nope", "/messages/nope/raw", "/messages/..%2Fmailsink.log/raw"):
        response = await sink.request("GET", path)
        assert response.status == 404, path


async def test_delete_clears_messages_and_their_files(sink: Sink) -> None:
    await sink.send(welcome("ann@example.test"))
    await sink.send(welcome("bob@example.test"))
    assert len(await sink.get("/messages")) == 2

    response = await sink.request("DELETE", "/messages")
    assert response.status == 200
    assert await sink.get("/messages") == []
    assert list(sink.directory.iterdir()) == []
    await sink.send(welcome("cy@example.test"))
    assert [m["rcpt_tos"] for m in await sink.get("/messages")] == [["cy@example.test"]]


async def test_messages_survive_a_restart(sink: Sink) -> None:
    await sink.send(welcome("ann@example.test", attachment=True))
    await sink.send(welcome("bob@example.test"))
    before = await sink.get("/messages")
    full_before = await sink.get(f"/messages/{before[1]['id']}")

    assert await sink.stop() == 0
    await sink.start()

    assert await sink.get("/messages") == before
    assert await sink.get(f"/messages/{before[1]['id']}") == full_before
    await sink.send(welcome("cy@example.test"))
    after = await sink.get("/messages")
    assert [m["rcpt_tos"] for m in after] == [
        ["cy@example.test"],
        ["bob@example.test"],
        ["ann@example.test"],
    ]


# -- fault injection -----------------------------------------------------------------


async def set_fault(sink: Sink, **fault: Any) -> aiohttp.ClientResponse:
    return await sink.request("POST", "/_control/faults", json=fault)


async def test_fault_refuses_mail_until_cleared(sink: Sink) -> None:
    response = await set_fault(sink, code=421, message="Try again later", seconds=30)
    assert response.status == 200

    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPException) as refused:
            await sink.send(welcome())
        assert refusal_codes(refused.value) == [421]
    assert await sink.get("/messages") == []
    assert list(sink.directory.glob("*.eml")) == []
    assert await sink.get("/_control/stats") == {"accepted": 0, "refused": 2}

    response = await sink.request("DELETE", "/_control/faults")
    assert response.status == 200
    await sink.send(welcome())
    assert len(await sink.get("/messages")) == 1
    assert await sink.get("/_control/stats") == {"accepted": 1, "refused": 2}


async def test_fault_ends_by_itself_after_its_seconds(sink: Sink) -> None:
    assert (await set_fault(sink, code=451, message="Busy", seconds=1)).status == 200
    with pytest.raises(aiosmtplib.SMTPException) as refused:
        await sink.send(welcome())
    assert refusal_codes(refused.value) == [451]
    assert "Busy" in str(refused.value)

    await asyncio.sleep(1.2)
    await sink.send(welcome())
    assert len(await sink.get("/messages")) == 1


async def test_fault_must_be_a_valid_smtp_reply(sink: Sink) -> None:
    for fault in (
        {"code": 250, "message": "OK", "seconds": 5},
        {"code": 421, "message": "two\r\n250 lines", "seconds": 5},
        {"code": 421, "message": "x", "seconds": -1},
        {"code": "421", "message": "x", "seconds": 5},
    ):
        assert (await set_fault(sink, **fault)).status == 400, fault
    await sink.send(welcome())
    assert len(await sink.get("/messages")) == 1
