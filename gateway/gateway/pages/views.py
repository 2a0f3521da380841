"""Pages of the web UI: signup, login (password or emailed link), password reset,
email verification, account, logout, and the dev-only captured-mail viewer.

Pages call the services' JSON APIs with the visitor's token; they hold no
business logic. Every form post is CSRF-checked; links from emails open a
page whose button posts the token, so following a link never uses it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp
from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.pages.common import (
    Obj,
    P,
    call_clients,
    guarded,
    logged_in,
    public_fields,
    read_form,
)
from gateway.pages.rendering import Pages
from gateway.upstream import UpstreamUnavailable
from kit.logging import get_logger
from kit.validation import safe_next_path

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)


# -- home -------------------------------------------------------------------------


@router.get("/")
async def home(request: Request, p: P) -> Response:
    return await p.render(request, "home.html")


# -- signup -----------------------------------------------------------------------


@router.get("/signup")
async def signup_page(request: Request, p: P) -> Response:
    if await p.viewer(request):
        return p.redirect("/account")
    next_path = safe_next_path(request.query_params.get("next"))
    return await p.render(request, "signup.html", form={"next": next_path})


@router.post("/signup")
async def signup(request: Request, p: P) -> Response:
    form = await read_form(request)
    if stop := await guarded(p, request, form, "signup.html", "signup"):
        return stop
    body = {k: form.get(k, "") for k in ("name", "email", "password", "business_name")}
    reply = await call_clients(p, "POST", "/signup", json_body=body)
    if reply.ok:
        next_path = safe_next_path(form.get("next"))
        return await logged_in(p, reply.body, next_path or "/account", "signed_up")
    errors = reply.field_errors()
    if reply.status == 409:
        errors["email"] = "An account with this email already exists. Log in instead."
    return await p.render(
        request,
        "signup.html",
        status=reply.status if reply.status < 500 else 502,
        form=public_fields(form),
        errors=errors,
        error=None if errors else reply.detail or "Signup failed. Please try again.",
    )


# -- login ------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request, p: P) -> Response:
    next_path = safe_next_path(request.query_params.get("next"))
    if await p.viewer(request):
        return p.redirect(next_path or "/account")
    return await p.render(request, "login.html", next=next_path)


@router.post("/login")
async def login(request: Request, p: P) -> Response:
    form = await read_form(request)
    next_path = safe_next_path(form.get("next"))
    if stop := await guarded(p, request, form, "login.html", "login", next=next_path):
        return stop
    reply = await call_clients(
        p,
        "POST",
        "/sessions",
        json_body={"email": form.get("email", ""), "password": form.get("password", "")},
    )
    if reply.ok:
        return await logged_in(p, reply.body, next_path or "/account", "logged_in")
    errors = reply.field_errors() if reply.status == 422 else {}
    return await p.render(
        request,
        "login.html",
        status=reply.status if reply.status < 500 else 502,
        form=public_fields(form),
        errors=errors,
        next=next_path,
        error=None if errors else "The email or password is incorrect.",
    )


@router.get("/login/magic")
async def magic_request_page(request: Request, p: P) -> Response:
    return await p.render(
        request, "magic_request.html", next=safe_next_path(request.query_params.get("next"))
    )


@router.post("/login/magic")
async def magic_request(request: Request, p: P) -> Response:
    form = await read_form(request)
    next_path = safe_next_path(form.get("next"))
    if stop := await guarded(p, request, form, "magic_request.html", "magic_link", next=next_path):
        return stop
    reply = await call_clients(
        p, "POST", "/magic-links", json_body={"email": form.get("email", ""), "next": next_path}
    )
    if reply.status == 422:
        return await p.render(
            request,
            "magic_request.html",
            status=422,
            form=public_fields(form),
            errors=reply.field_errors(),
            next=next_path,
        )
    return await p.render(request, "magic_sent.html", email=form.get("email", ""))


@router.get("/login/magic/confirm")
async def magic_confirm_page(request: Request, p: P) -> Response:
    """Shows a button; only its POST logs in (mail scanners follow links with GET)."""
    token = request.query_params.get("token")
    error = None if token else "This login link is incomplete. Ask for a new one."
    return await p.render(request, "magic_confirm.html", token=token, error=error)


@router.post("/login/magic/confirm")
async def magic_confirm(request: Request, p: P) -> Response:
    form = await read_form(request)
    token = form.get("token")
    if stop := await guarded(p, request, form, "magic_confirm.html", "login", token=token):
        return stop
    reply = await call_clients(p, "POST", "/magic-links/consume", json_body={"token": token or ""})
    if reply.ok:
        return await logged_in(p, reply.body, reply.body.get("next") or "/account", "logged_in")
    return await p.render(
        request,
        "magic_confirm.html",
        status=400 if reply.status == 422 else reply.status,
        token=None,
        error="This login link has expired or was already used. Ask for a new one.",
    )


@router.post("/logout")
async def logout(request: Request, p: P) -> Response:
    form = await read_form(request)
    session_token = request.cookies.get(p.settings.session_cookie)
    if not p.csrf_ok(request, form.get("csrf_token")):
        return await p.render(
            request,
            "error.html",
            status=403,
            title="Please try again",
            message="This form expired. Reload the page and log out again.",
        )
    if session_token:
        await call_clients(
            p, "POST", "/sessions/revoke", json_body={"session_token": session_token}
        )
        p.state.sessions.forget(session_token)
    response = p.redirect("/", notice="logged_out")
    response.delete_cookie(p.settings.session_cookie, path="/")
    return response


# -- password reset -----------------------------------------------------------------


@router.get("/password/forgot")
async def forgot_page(request: Request, p: P) -> Response:
    return await p.render(request, "forgot_password.html")


@router.post("/password/forgot")
async def forgot(request: Request, p: P) -> Response:
    form = await read_form(request)
    if stop := await guarded(p, request, form, "forgot_password.html", "password_reset"):
        return stop
    reply = await call_clients(
        p, "POST", "/password-resets", json_body={"email": form.get("email", "")}
    )
    if reply.status == 422:
        return await p.render(
            request,
            "forgot_password.html",
            status=422,
            form=public_fields(form),
            errors=reply.field_errors(),
        )
    return await p.render(request, "forgot_sent.html", email=form.get("email", ""))


@router.get("/password/reset")
async def reset_page(request: Request, p: P) -> Response:
    token = request.query_params.get("token")
    error = None if token else "This reset link is incomplete. Ask for a new one."
    return await p.render(request, "reset_password.html", token=token, error=error)


@router.post("/password/reset")
async def reset(request: Request, p: P) -> Response:
    form = await read_form(request)
    token = form.get("token")
    if stop := await guarded(
        p, request, form, "reset_password.html", "password_reset", token=token
    ):
        return stop
    reply = await call_clients(
        p,
        "POST",
        "/password-resets/consume",
        json_body={"token": token or "", "password": form.get("password", "")},
    )
    if reply.ok:
        return await logged_in(p, reply.body, "/account", "password_changed")
    if reply.status == 422:
        return await p.render(
            request, "reset_password.html", status=422, token=token, errors=reply.field_errors()
        )
    return await p.render(
        request,
        "reset_password.html",
        status=reply.status,
        token=None,
        error="This reset link has expired or was already used. Ask for a new one.",
    )


# -- email verification ---------------------------------------------------------------


@router.get("/verify-email")
async def verify_page(request: Request, p: P) -> Response:
    token = request.query_params.get("token")
    error = None if token else "This verification link is incomplete."
    return await p.render(request, "verify_email.html", token=token, error=error, verified=False)


@router.post("/verify-email")
async def verify(request: Request, p: P) -> Response:
    form = await read_form(request)
    token = form.get("token")
    if stop := await guarded(p, request, form, "verify_email.html", token=token, verified=False):
        return stop
    reply = await call_clients(
        p, "POST", "/email-verifications/consume", json_body={"token": token or ""}
    )
    if reply.ok:
        return await p.render(request, "verify_email.html", token=None, verified=True)
    return await p.render(
        request,
        "verify_email.html",
        status=400 if reply.status == 422 else reply.status,
        token=None,
        verified=False,
        error="This verification link has expired or was already used.",
    )


# -- account ----------------------------------------------------------------------


@router.get("/account")
async def account(request: Request, p: P) -> Response:
    active = await p.viewer(request)
    if active is None:
        return p.redirect("/login?next=/account", notice="login_required")
    reply = await call_clients(p, "GET", "/me", token=active.access_token)
    if not reply.ok:
        return p.redirect("/login?next=/account", notice="login_required")
    me = reply.body
    account_view = {
        **me["account"],
        "created_at": datetime.fromisoformat(me["account"]["created_at"]),
    }
    return await p.render(
        request,
        "account.html",
        account=Obj(account_view),
        businesses=[Obj(b) for b in me["businesses"]],
    )


@router.post("/account/verification")
async def resend_verification(request: Request, p: P) -> Response:
    form = await read_form(request)
    active = await p.viewer(request)
    if active is None:
        return p.redirect("/login?next=/account", notice="login_required")
    if not p.csrf_ok(request, form.get("csrf_token")):
        return p.redirect("/account")
    reply = await call_clients(p, "POST", "/email-verifications", token=active.access_token)
    sent = reply.ok and reply.body.get("status") == "accepted"
    return p.redirect("/account", notice="verification_sent" if sent else "already_verified")


# -- development ----------------------------------------------------------------------


async def _mail_api(p: Pages, path: str) -> Any:
    url = f"{p.settings.dev_mail_url.rstrip('/')}{path}"
    try:
        async with p.state.upstreams.session.get(url) as response:
            if response.status == 404:
                return None
            response.raise_for_status()
            return await response.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamUnavailable(f"the SMTP sink at {url} is not answering") from exc


@router.get("/dev/mail")
async def dev_mail(request: Request, p: P) -> Response:
    if not p.settings.dev_mode:
        return await p.render(
            request, "error.html", status=404, title="Not found", message="There is no page here."
        )
    messages = await _mail_api(p, "/messages?limit=200")
    return await p.render(request, "dev_mail_list.html", messages=messages or [])


@router.get("/dev/mail/{message_id}")
async def dev_mail_message(request: Request, message_id: str, p: P) -> Response:
    message = await _mail_api(p, f"/messages/{message_id}") if p.settings.dev_mode else None
    if message is None:
        return await p.render(
            request,
            "error.html",
            status=404,
            title="Not found",
            message="There is no such message.",
        )
    response = await p.render(request, "dev_mail_message.html", message=message)
    # The captured email renders in a sandboxed srcdoc frame, which inherits this
    # policy: it needs the email's inline styles, and to be framed by this page.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; object-src 'none'; frame-ancestors 'self'"
    )
    return response
