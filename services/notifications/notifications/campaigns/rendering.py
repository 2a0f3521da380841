"""A campaign's email: its Markdown made safe HTML, rendered once for all recipients.

Markdown is CommonMark with raw HTML off (tags in the text are shown as
text) and links only to http(s) and mailto (anything else, ``javascript:``
included, stays plain text). The email template is rendered once with
unguessable markers where the per-recipient values go (the greeting's name
and the unsubscribe link); each recipient's copy is then a cheap join of
the pieces with their values, escaped for HTML in the HTML part.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from notifications.emails.rendering import EmailRenderer, one_line
from notifications.models import CAMPAIGN_TEMPLATE as CAMPAIGN

_ALLOWED_LINK_PREFIXES = ("http://", "https://", "mailto:")
_MONO = "SFMono-Regular,Menlo,Consolas,'Liberation Mono',monospace"

# Inline styles for what Markdown produces (mail clients ignore style sheets).
_STYLES = {
    "paragraph_open": "margin:0 0 16px 0;font-size:16px;line-height:24px;color:#1f2937;",
    "heading_open": (
        "margin:24px 0 12px 0;font-size:20px;line-height:28px;font-weight:bold;color:#111827;"
    ),
    "link_open": "color:#0f766e;text-decoration:underline;",
    "bullet_list_open": "margin:0 0 16px 0;padding:0 0 0 24px;",
    "ordered_list_open": "margin:0 0 16px 0;padding:0 0 0 24px;",
    "list_item_open": "margin:0 0 4px 0;",
    "blockquote_open": (
        "margin:0 0 16px 0;padding:0 0 0 12px;border-left:3px solid #e5e7eb;color:#4b5563;"
    ),
    "code_inline": f"font-family:{_MONO};background-color:#f3f4f6;padding:1px 4px;",
    "fence": f"font-family:{_MONO};white-space:pre-wrap;",
    "code_block": f"font-family:{_MONO};white-space:pre-wrap;",
    "hr": "border:0;border-top:1px solid #e5e7eb;margin:24px 0;",
    "image": "max-width:100%;height:auto;border:0;",
}


class SafeMarkdown(MarkdownIt):
    def __init__(self) -> None:
        super().__init__("commonmark", {"html": False, "linkify": False, "typographer": False})

    def validateLink(self, url: str) -> bool:  # markdown-it calls it by this name
        # The url is normalised (percent-encoded) already: no whitespace tricks get here.
        return url.strip().lower().startswith(_ALLOWED_LINK_PREFIXES)


_markdown = SafeMarkdown()


def _style(tokens: Sequence[Token]) -> None:
    for token in tokens:
        style = _STYLES.get(token.type)
        if style:
            token.attrSet("style", style)
        if token.type == "link_open":
            token.attrSet("target", "_blank")
            token.attrSet("rel", "noopener noreferrer")
        if token.children:
            _style(token.children)


def markdown_to_html(source: str) -> str:
    """Safe HTML for an email: escaped text, allowed links only, inline styles."""
    tokens = _markdown.parse(source)
    _style(tokens)
    return _markdown.renderer.render(tokens, _markdown.options, {})


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True)
class RecipientEmail:
    text_body: str
    html_body: str


class _Pieces:
    """A rendered text with markers, split so each copy is a join of the pieces."""

    def __init__(self, rendered: str, markers: dict[str, str]) -> None:
        pattern = re.compile("|".join(re.escape(marker) for marker in markers))
        self.pieces: list[str] = pattern.split(rendered)
        self.slots: list[str] = [markers[found] for found in pattern.findall(rendered)]

    def fill(self, values: dict[str, str]) -> str:
        out = [self.pieces[0]]
        for slot, piece in zip(self.slots, self.pieces[1:], strict=True):
            out.append(values[slot])
            out.append(piece)
        return "".join(out)


@dataclass(frozen=True)
class CampaignContent:
    business_name: str
    subject: str
    body_markdown: str
    discount_code: str | None


class CampaignEmail:
    """The campaign's email rendered once; :meth:`for_recipient` makes each copy."""

    def __init__(self, renderer: EmailRenderer, content: CampaignContent) -> None:
        nonce = secrets.token_hex(8)
        name_marker, url_marker = f"cmpNAME{nonce}x", f"cmpURL{nonce}x"
        body = normalise_newlines(content.body_markdown).strip("\n")
        context: dict[str, Any] = {
            "campaign_subject": content.subject,
            "business_name": content.business_name,
            "body_html": Markup(markdown_to_html(body)),  # noqa: S704 (safe by construction)
            "body_text": body,
            "discount_code": one_line(content.discount_code, 64) if content.discount_code else None,
            "name": name_marker,
            "unsubscribe_url": url_marker,
        }
        rendered = renderer.render(CAMPAIGN, context)
        self.subject = rendered.subject
        markers = {name_marker: "name", url_marker: "unsubscribe_url"}
        self._text = _Pieces(rendered.text_body, markers)
        self._html = _Pieces(rendered.html_body, markers)

    def for_recipient(self, name: str, unsubscribe_url: str) -> RecipientEmail:
        text_values = {"name": name, "unsubscribe_url": unsubscribe_url}
        html_values = {key: html.escape(value, quote=True) for key, value in text_values.items()}
        return RecipientEmail(self._text.fill(text_values), self._html.fill(html_values))
