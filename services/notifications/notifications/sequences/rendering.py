"""A sequence step's email: the coach's subject and Markdown with the client's and the
offering's names filled in.

The Markdown goes through the campaigns' safe renderer (CommonMark, raw HTML off, so
tags in the text are shown as text; links only to http(s) and mailto). The
placeholders ``{client_name}`` and ``{offering_name}`` become markers before rendering
and the values, HTML-escaped, replace the markers afterwards: a name is always text,
never Markdown or HTML.
"""

from __future__ import annotations

import html
import secrets
from typing import Any

from markupsafe import Markup

from notifications.campaigns.rendering import markdown_to_html, normalise_newlines
from notifications.emails.rendering import EmailRenderer, RenderedEmail, one_line

TEMPLATE = "sequence_email"
PLACEHOLDERS = ("client_name", "offering_name")


def fill(text: str, values: dict[str, str]) -> str:
    for name in PLACEHOLDERS:
        text = text.replace("{" + name + "}", values[name])
    return text


def body_html(markdown: str, values: dict[str, str]) -> str:
    nonce = secrets.token_hex(8)
    markers = {name: f"seqph{nonce}{n}x" for n, name in enumerate(PLACEHOLDERS)}
    marked = markdown
    for name, marker in markers.items():
        marked = marked.replace("{" + name + "}", marker)
    rendered = markdown_to_html(marked)
    for name, marker in markers.items():
        rendered = rendered.replace(marker, html.escape(values[name], quote=True))
    return rendered


def render_step_email(
    renderer: EmailRenderer,
    *,
    subject: str,
    body_markdown: str,
    client_name: str,
    offering_name: str,
    business_name: str,
) -> RenderedEmail:
    values = {
        "client_name": one_line(client_name) or "there",
        "offering_name": one_line(offering_name) or "your purchase",
    }
    source = normalise_newlines(body_markdown).strip("\n")
    context: dict[str, Any] = {
        "email_subject": one_line(fill(subject, values), 200),
        "business_name": one_line(business_name) or "your coach",
        "body_html": Markup(body_html(source, values)),  # noqa: S704 (safe by construction)
        "body_text": fill(source, values),
    }
    return renderer.render(TEMPLATE, context)
