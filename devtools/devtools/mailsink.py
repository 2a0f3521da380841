"""``python -m devtools.mailsink``: an SMTP server that keeps every message, with a JSON API.

It stands in for the real mail provider on a developer's machine and in the
end-to-end tests: anything sent to it is accepted (no auth, no TLS), written to
``<dir>/<id>.eml`` (the bytes as received) and ``<dir>/<id>.json`` (the
envelope), and can be read back over HTTP. Messages survive restarts.

SMTP (aiosmtpd) and HTTP (aiohttp) share one asyncio loop in one process.
``POST /_control/faults`` makes the server refuse mail for a while, so tests
can check that senders retry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from kit.logging import configure_logging, get_logger

log = get_logger("mailsink")

# -- reading messages -----------------------------------------------------------------

_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)


def parse_message(raw: bytes, *, headers_only: bool = False) -> EmailMessage:
    # policy.default: EmailMessage objects with decoded headers (the legacy policy is compat32).
    return BytesParser(policy=policy.default).parsebytes(raw, headersonly=headers_only)


def decoded_headers(msg: EmailMessage) -> list[list[str]]:
    result = []
    for name, raw_value in msg.raw_items():
        try:
            value = str(msg.policy.header_fetch_parse(name, raw_value))
        except Exception:  # a malformed header must not hide the message: show it as sent
            value = str(raw_value)
        result.append([name, value])
    return result


def header_summary(headers: list[list[str]]) -> dict[str, Any]:
    first: dict[str, str] = {}
    for name, value in headers:
        first.setdefault(name.lower(), value)
    return {
        "subject": first.get("subject", ""),
        "from": first.get("from", ""),
        "to": first.get("to", ""),
        "message_id": first.get("message-id"),
    }


def _text_of(part: EmailMessage) -> str:
    try:
        text = str(part.get_content())
    except LookupError:  # unknown charset: still show something
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return text.replace("\r\n", "\n")  # SMTP line endings are transport, not content


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs.extend(value.strip() for name, value in attrs if name == "href" and value)


def find_links(html: str | None, text: str | None) -> list[str]:
    """http(s) URLs from the html hrefs, then from the text, in order, without repeats."""
    found: list[str] = []
    if html:
        hrefs = _Hrefs()
        hrefs.feed(html)
        hrefs.close()
        found += hrefs.hrefs
    if text:
        # Sentence punctuation right after a URL is not part of it.
        found += [m.group().rstrip(".,;:!?)]}") for m in _URL_IN_TEXT.finditer(text)]
    web_links = [url for url in found if urlsplit(url).scheme.lower() in ("http", "https")]
    return list(dict.fromkeys(web_links))


def message_details(raw: bytes) -> dict[str, Any]:
    """Headers, bodies, attachments and links of a raw message (without the envelope)."""
    msg = parse_message(raw)
    headers = decoded_headers(msg)
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    bodies = [p for p in (text_part, html_part) if p is not None]
    attachments = []
    for part in msg.walk():
        if part.is_multipart() or any(part is body for body in bodies):
            continue
        if part.is_attachment() or part.get_filename():
            payload = part.get_payload(decode=True)
            attachments.append(
                {
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "size": len(payload) if isinstance(payload, bytes) else 0,
                }
            )
    text = _text_of(cast(EmailMessage, text_part)) if text_part is not None else None
    html = _text_of(cast(EmailMessage, html_part)) if html_part is not None else None
    return {
        **header_summary(headers),
        "headers": headers,
        "text": text,
        "html": html,
        "attachments": attachments,
        "links": find_links(html, text),
    }


# -- storage -------------------------------------------------------------------------


class Mailbox:
    """Messages as files in one directory, with an in-memory index of their summaries.

    The index is only touched from the event loop; file IO runs in threads.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._summaries: dict[str, dict[str, Any]] = {}

    def _eml(self, message_id: str) -> Path:
        return self.directory / f"{message_id}.eml"

    def _summarize(self, envelope: dict[str, Any], raw: bytes) -> dict[str, Any]:
        headers = decoded_headers(parse_message(raw, headers_only=True))
        return {
            "id": envelope["id"],
            "received_at": envelope["received_at"],
            "mail_from": envelope["mail_from"],
            "rcpt_tos": envelope["rcpt_tos"],
            **header_summary(headers),
        }

    def _read_all(self) -> list[dict[str, Any]]:
        self.directory.mkdir(parents=True, exist_ok=True)
        summaries = []
        for envelope_path in sorted(self.directory.glob("*.json")):
            # The .json is written last, so a message with one is complete; a broken
            # one (a crash mid-write) is skipped rather than stopping the sink.
            try:
                envelope = json.loads(envelope_path.read_text("utf-8"))
                envelope["id"] = envelope_path.stem  # the file name is what the API serves
                raw = self._eml(envelope_path.stem).read_bytes()
                summaries.append(self._summarize(envelope, raw))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("message skipped", file=envelope_path.name, error=str(exc))
        return summaries

    async def load(self) -> int:
        for summary in await asyncio.to_thread(self._read_all):
            self._summaries[summary["id"]] = summary
        return len(self._summaries)

    def _write(self, envelope: dict[str, Any], raw: bytes) -> dict[str, Any]:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._eml(envelope["id"]).write_bytes(raw)
        (self.directory / f"{envelope['id']}.json").write_text(json.dumps(envelope), "utf-8")
        return self._summarize(envelope, raw)

    async def add(
        self, raw: bytes, *, mail_from: str, rcpt_tos: list[str], peer: str
    ) -> dict[str, Any]:
        envelope = {
            # Time first, so ids sort in arrival order (also across restarts).
            "id": f"{time.time_ns()}-{uuid.uuid4().hex[:8]}",
            "received_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "mail_from": mail_from,
            "rcpt_tos": rcpt_tos,
            "peer": peer,
        }
        summary = await asyncio.to_thread(self._write, envelope, raw)
        self._summaries[summary["id"]] = summary
        return summary

    def summaries(self, to: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        found = sorted(self._summaries.values(), key=lambda s: str(s["id"]), reverse=True)
        if to is not None:
            wanted = to.strip().lower()
            found = [s for s in found if wanted in (r.lower() for r in s["rcpt_tos"])]
        return found[:limit] if limit is not None else found

    async def raw(self, message_id: str) -> bytes | None:
        # Only ids from the index reach the file system: no path tricks through the URL.
        if message_id not in self._summaries:
            return None
        return await asyncio.to_thread(self._eml(message_id).read_bytes)

    async def details(self, message_id: str) -> dict[str, Any] | None:
        raw = await self.raw(message_id)
        if raw is None:
            return None
        details = await asyncio.to_thread(message_details, raw)
        return {**self._summaries[message_id], **details}

    def _delete_files(self) -> None:
        for pattern in ("*.eml", "*.json"):
            for path in self.directory.glob(pattern):
                path.unlink(missing_ok=True)

    async def clear(self) -> int:
        count = len(self._summaries)
        self._summaries.clear()
        await asyncio.to_thread(self._delete_files)
        return count


# -- SMTP ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    code: int
    message: str
    until: float | None  # time.monotonic() deadline; None: until cleared

    def reply(self) -> str:
        # x.3.2: "system not accepting network messages", whatever the code class.
        return f"{self.code} {self.code // 100}.3.2 {self.message}"


class SinkHandler:
    """aiosmtpd handler: accepts everything unless a fault is active."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.fault: Fault | None = None
        self.accepted = 0
        self.refused = 0

    def active_fault(self) -> Fault | None:
        fault = self.fault
        if fault is not None and fault.until is not None and time.monotonic() >= fault.until:
            self.fault = None
        return self.fault

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if fault := self.active_fault():
            self.refused += 1
            return fault.reply()
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # A fault switched on between RCPT and DATA refuses the message too.
        if fault := self.active_fault():
            return fault.reply()
        peer: Any = session.peer
        summary = await self.mailbox.add(
            envelope.original_content or b"",
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
        )
        self.accepted += 1
        log.info(
            "mail accepted",
            id=summary["id"],
            mail_from=summary["mail_from"],
            rcpt_count=len(summary["rcpt_tos"]),
            subject=summary["subject"],
        )
        return f"250 2.0.0 OK queued as {summary['id']}"


# -- HTTP ----------------------------------------------------------------------------

HANDLER = web.AppKey("handler", SinkHandler)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def list_messages(request: web.Request) -> web.Response:
    limit: int | None = None
    if "limit" in request.query:
        try:
            limit = int(request.query["limit"])
        except ValueError:
            limit = -1
        if limit < 0:
            return _error(400, "limit must be a whole number >= 0")
    mailbox = request.app[HANDLER].mailbox
    return web.json_response(mailbox.summaries(request.query.get("to") or None, limit))


async def get_message(request: web.Request) -> web.Response:
    details = await request.app[HANDLER].mailbox.details(request.match_info["id"])
    if details is None:
        return _error(404, "no such message")
    return web.json_response(details)


async def get_raw(request: web.Request) -> web.Response:
    raw = await request.app[HANDLER].mailbox.raw(request.match_info["id"])
    if raw is None:
        return _error(404, "no such message")
    return web.Response(body=raw, content_type="message/rfc822")


async def delete_messages(request: web.Request) -> web.Response:
    return web.json_response({"deleted": await request.app[HANDLER].mailbox.clear()})


async def set_fault(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "body must be JSON")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    code = body.get("code", 421)
    message = body.get("message", "Try again later")
    seconds = body.get("seconds")
    if type(code) is not int or not 400 <= code <= 599:
        return _error(400, "code must be an SMTP error code, 400-599")
    # It goes into an SMTP reply line: no line breaks, nothing a client cannot decode.
    if not isinstance(message, str) or not (message.isascii() and message.isprintable()):
        return _error(400, "message must be printable ASCII text")
    if seconds is not None and (type(seconds) not in (int, float) or seconds <= 0):
        return _error(400, "seconds must be a positive number (or absent: until cleared)")
    until = time.monotonic() + seconds if seconds is not None else None
    request.app[HANDLER].fault = Fault(code, message, until)
    log.info("fault injected", code=code, message=message, seconds=seconds)
    return web.json_response({"code": code, "message": message, "seconds": seconds})


async def clear_fault(request: web.Request) -> web.Response:
    handler = request.app[HANDLER]
    was_active = handler.active_fault() is not None
    handler.fault = None
    return web.json_response({"cleared": was_active})


async def stats(request: web.Request) -> web.Response:
    handler = request.app[HANDLER]
    return web.json_response({"accepted": handler.accepted, "refused": handler.refused})


def build_app(handler: SinkHandler) -> web.Application:
    app = web.Application()
    app[HANDLER] = handler
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/messages", list_messages)
    app.router.add_delete("/messages", delete_messages)
    app.router.add_get("/messages/{id}", get_message)
    app.router.add_get("/messages/{id}/raw", get_raw)
    app.router.add_post("/_control/faults", set_fault)
    app.router.add_delete("/_control/faults", clear_fault)
    app.router.add_get("/_control/stats", stats)
    return app


# -- process -------------------------------------------------------------------------


async def serve(host: str, smtp_port: int, http_port: int, directory: Path) -> None:
    mailbox = Mailbox(directory)
    loaded = await mailbox.load()
    handler = SinkHandler(mailbox)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    # A fixed hostname: the default looks up the machine's FQDN on every connection.
    smtp_server = await loop.create_server(
        lambda: SMTP(handler, hostname="mailsink", enable_SMTPUTF8=True, loop=loop),
        host,
        smtp_port,
    )
    runner = web.AppRunner(build_app(handler), access_log=None)  # tests poll: no line per GET
    try:
        await runner.setup()
        await web.TCPSite(runner, host, http_port).start()
        log.info(
            "mailsink started",
            host=host,
            smtp_port=smtp_port,
            http_port=http_port,
            directory=str(directory),
            messages=loaded,
        )
        await stop.wait()
    finally:
        smtp_server.close()
        await runner.cleanup()
    log.info("mailsink stopped", accepted=handler.accepted, refused=handler.refused)


def main(argv: list[str] | None = None) -> None:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m devtools.mailsink",
        description="SMTP sink that keeps every message, with a JSON API over HTTP.",
    )
    # String defaults go through type=int too, so a bad env value gets a clear error.
    parser.add_argument(
        "--host",
        default=env.get("MAILSINK_HOST", "127.0.0.1"),
        help="env MAILSINK_HOST (default 127.0.0.1)",
    )
    parser.add_argument(
        "--smtp-port",
        type=int,
        default=env.get("MAILSINK_SMTP_PORT", "1025"),
        help="env MAILSINK_SMTP_PORT (default 1025)",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=env.get("MAILSINK_HTTP_PORT", "8025"),
        help="env MAILSINK_HTTP_PORT (default 8025)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=env.get("MAILSINK_DIR", "var/mail"),
        help="env MAILSINK_DIR (default var/mail)",
    )
    args = parser.parse_args(argv)

    configure_logging("mailsink", env.get("LOG_LEVEL", "INFO"), env.get("LOG_FORMAT", "json"))
    # aiosmtpd logs every connection and command at INFO; our one line per message is enough.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    asyncio.run(serve(args.host, args.smtp_port, args.http_port, args.dir))


if __name__ == "__main__":
    main()
