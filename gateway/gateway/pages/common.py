"""What every page module shares: the Pages dependency, forms, upstream calls, login."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response

from gateway.pages.rendering import Pages
from gateway.security import client_address, new_csrf_token
from gateway.upstream import Reply, UpstreamUnavailable
from kit.errors import TooManyRequests, Unauthorized
from kit.logging import get_logger

log = get_logger(__name__)
CLIENTS = "/api/v1/clients"
NOTIFICATIONS = "/api/v1/notifications"
CATALOG = "/api/v1/catalog"
PAYMENTS = "/api/v1/payments"


async def pages(request: Request) -> Pages:
    result: Pages = request.app.state.pages
    return result


P = Annotated[Pages, Depends(pages)]


class FormData(dict[str, str]):
    """A posted form as plain strings."""


async def read_form(request: Request) -> FormData:
    form = await request.form()
    return FormData({k: v for k, v in form.items() if isinstance(v, str)})


async def read_form_lists(request: Request) -> tuple[FormData, dict[str, list[str]]]:
    """A posted form's single values, and every value of each (repeatable) field."""
    raw = await request.form()
    single = FormData({k: v for k, v in raw.items() if isinstance(v, str)})
    return single, {k: [v for v in raw.getlist(k) if isinstance(v, str)] for k in raw}


def body_of(reply: Reply) -> Any:
    """The body of a successful reply; any other answer shows the "try again shortly" page."""
    if not reply.ok:
        raise UpstreamUnavailable(f"a service answered {reply.status}")
    return reply.body


async def expired_form(p: Pages, request: Request, form: dict[str, str]) -> Response | None:
    """The page to show when a form's CSRF token does not match, else None."""
    if p.csrf_ok(request, form.get("csrf_token")):
        return None
    return await p.render(
        request,
        "error.html",
        status=403,
        title="Please try again",
        message="This form expired. Go back, reload the page and try again.",
    )


def public_fields(form: FormData) -> dict[str, str]:
    """What may be rendered back into a form: never a password or a token."""
    return {k: v for k, v in form.items() if k not in {"password", "csrf_token", "token"}}


async def guarded(
    p: Pages,
    request: Request,
    form: FormData,
    template: str,
    bucket: str | None = None,
    **context: Any,
) -> HTMLResponse | None:
    """CSRF and rate limit for a form post; a response when the post must stop here."""
    if not p.csrf_ok(request, form.get("csrf_token")):
        request.state.csrf_token = new_csrf_token()
        return await p.render(
            request,
            template,
            status=403,
            form=public_fields(form),
            error="This form expired. Please try again.",
            **context,
        )
    if bucket is not None:
        ip = client_address(request.scope, p.settings.trusted_proxy_count)
        try:
            await p.state.rate_limits.hit(bucket, ip, form.get("email"))
        except TooManyRequests as exc:
            response = await p.render(
                request, template, status=429, form=public_fields(form), error=exc.detail, **context
            )
            response.headers.update(exc.headers)
            return response
    return None


async def call_clients(p: Pages, method: str, path: str, **kwargs: Any) -> Reply:
    return await p.state.upstreams.call("clients", method, f"{CLIENTS}{path}", **kwargs)


async def logged_in(p: Pages, result: dict[str, Any], to: str, notice: str) -> Response:
    """Store the new session in the cookie and go on."""
    response = p.redirect(to, notice=notice)
    session_expires = datetime.fromisoformat(result["session_expires_at"])
    p.set_cookie(
        response,
        p.settings.session_cookie,
        result["session_token"],
        max_age=max(60, int(session_expires.timestamp() - time.time())),
    )
    # A fresh CSRF token after login, so one planted before it is worthless.
    p.set_cookie(response, p.settings.csrf_cookie, new_csrf_token(), max_age=None)
    try:
        principal = await p.state.verifier.verify(result["access_token"])
        p.state.sessions.remember(result["session_token"], result["access_token"], principal)
    except Unauthorized:
        log.warning("login_token_not_verifiable")
    return response


class Obj(dict[str, Any]):
    """Attribute access for templates over a JSON object."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


async def call_notifications(p: Pages, method: str, path: str, **kwargs: Any) -> Reply:
    return await p.state.upstreams.call("notifications", method, f"{NOTIFICATIONS}{path}", **kwargs)


async def call_catalog(p: Pages, method: str, path: str, **kwargs: Any) -> Reply:
    return await p.state.upstreams.call("catalog", method, f"{CATALOG}{path}", **kwargs)


async def call_payments(p: Pages, method: str, path: str, **kwargs: Any) -> Reply:
    return await p.state.upstreams.call("payments", method, f"{PAYMENTS}{path}", **kwargs)
