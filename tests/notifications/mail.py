"""Reading received messages: their parts and the links in them."""

from __future__ import annotations

import re
from email.message import EmailMessage
from html.parser import HTMLParser

_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"']+")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs.extend(value or "" for name, value in attrs if name in {"href", "src"})

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parts(message: EmailMessage) -> tuple[str, str]:
    """(text, html) of a multipart/alternative message."""
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def text_links(text: str) -> list[str]:
    return _URL_IN_TEXT.findall(text)


def html_links(html: str) -> list[str]:
    """Every href/src (entities decoded, as a mail client reads them)."""
    parser = _Links()
    parser.feed(html)
    return parser.hrefs


def html_text(html: str) -> str:
    parser = _Links()
    parser.feed(html)
    return " ".join(" ".join(parser.text).split())


def all_links(message: EmailMessage) -> list[str]:
    text, html = parts(message)
    return text_links(text) + html_links(html) + text_links(html_text(html))
