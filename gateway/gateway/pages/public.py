"""Pages for clients and email recipients: client home, accepting an invitation,
unsubscribing from promotions.

Links in emails open a page whose button posts the token; a GET never uses
it up (mail scanners follow links). The unsubscribe endpoint also takes the
one-click POST that mail clients send (RFC 8058), which carries no CSRF
token: the token in the link is the authority there.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from gateway.pages.billing import my_billing
from gateway.pages.common import (
    Obj,
    P,
    call_clients,
    call_notifications,
    guarded,
    logged_in,
    public_fields,
    read_form,
)
from gateway.pages.forms import HOME_HISTORY, my_forms, purchase_history
from gateway.pages.rendering import Pages
from gateway.upstream import UpstreamUnavailable

router = APIRouter(include_in_schema=False)


# -- client home -------------------------------------------------------------------------


@router.get("/home")
async def client_home(request: Request, p: P) -> Response:
    active = await p.viewer(request)
    if active is None:
        return p.redirect("/login?next=/home", notice="login_required")
    reply = await call_clients(p, "GET", "/me/memberships", token=active.access_token)
    if not reply.ok:
        raise UpstreamUnavailable(f"clients answered {reply.status}")
    billing = await my_billing(p, active.access_token)
    return await p.render(
        request,
        "client_home.html",
        memberships=[Obj(m) for m in reply.body["items"]],
        purchases=await _purchases(p, active.access_token),
        # Payments that cannot say (yet) only leaves the section out.
        subscriptions=billing["subscriptions"] if billing else [],
        billing_known=billing is not None,
        # Agreements to sign and worksheets to fill, by entitlement id (pages/forms.py).
        form_states=await my_forms(p, active.access_token),
        history=await purchase_history(p, active.access_token, HOME_HISTORY),
    )


async def _purchases(p: Pages, token: str) -> list[Obj]:
    """What the client bought, per business: credits ("3 of 5 left") and entitlements.

    A clients service that cannot say (yet) only leaves the section empty.
    """
    try:
        reply = await call_clients(p, "GET", "/me/purchases", token=token)
    except UpstreamUnavailable:
        return []
    if not reply.ok or not isinstance(reply.body, dict):
        return []
    result = []
    for business in reply.body.get("items", []):
        credits = [
            Obj(
                {
                    **c,
                    "label": c.get("label") or f"{c.get('remaining')} of {c.get('total')} left",
                }
            )
            for c in business.get("credits", [])
        ]
        entitlements = [Obj(e) for e in business.get("entitlements", [])]
        if credits or entitlements:
            result.append(Obj({**business, "credits": credits, "entitlements": entitlements}))
    return result


# -- invitations ---------------------------------------------------------------------------


async def _lookup(p: Pages, token: str | None) -> Obj | None:
    if not token:
        return None
    reply = await call_clients(p, "POST", "/invitations/lookup", json_body={"token": token})
    return Obj(reply.body) if reply.ok else None


@router.get("/invitations/accept")
async def invitation_page(request: Request, p: P) -> Response:
    token = request.query_params.get("token")
    invitation = await _lookup(p, token)
    response = await p.render(request, "invitation_accept.html", token=token, invitation=invitation)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.post("/invitations/accept")
async def accept_invitation(request: Request, p: P) -> Response:
    form = await read_form(request)
    token = form.get("token")
    invitation = await _lookup(p, token)
    context: dict[str, Any] = {"token": token, "invitation": invitation}
    if stop := await guarded(p, request, form, "invitation_accept.html", "login", **context):
        return stop
    active = await p.viewer(request)
    body: dict[str, Any] = {"token": token or ""}
    if active is None:
        body |= {"name": form.get("name") or None, "password": form.get("password") or None}
    reply = await call_clients(
        p,
        "POST",
        "/invitations/accept",
        json_body=body,
        token=active.access_token if active else None,
    )
    if reply.ok:
        return await logged_in(p, reply.body, "/home", "invitation_accepted")
    errors = reply.field_errors()
    if reply.status == 401:
        errors["password"] = "The password is incorrect."
    return await p.render(
        request,
        "invitation_accept.html",
        status=reply.status,
        form=public_fields(form),
        errors=errors,
        error=None if errors else reply.detail,
        **context,
    )


# -- unsubscribe ---------------------------------------------------------------------------


async def _unsubscribe_info(p: Pages, token: str | None) -> Obj | None:
    if not token:
        return None
    reply = await call_notifications(p, "POST", "/unsubscribe/lookup", json_body={"token": token})
    return Obj(reply.body) if reply.ok else None


def _token_of(request: Request, form: dict[str, str]) -> str | None:
    # Mail clients post to the URL from List-Unsubscribe: the token is in its query.
    return form.get("token") or request.query_params.get("token")


@router.get("/unsubscribe")
async def unsubscribe_page(request: Request, p: P) -> Response:
    token = request.query_params.get("token")
    info = await _unsubscribe_info(p, token)
    response = await p.render(
        request, "unsubscribe.html", token=token, info=info, done=False, undone=False
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.post("/unsubscribe")
async def unsubscribe(request: Request, p: P) -> Response:
    form = await read_form(request)
    token = _token_of(request, form)
    reply = await call_notifications(p, "POST", "/unsubscribe", json_body={"token": token or ""})
    if form.get("List-Unsubscribe") == "One-Click":  # a mail client, not a person
        return PlainTextResponse(
            "unsubscribed" if reply.ok else "unknown link", status_code=200 if reply.ok else 404
        )
    info = Obj(reply.body) if reply.ok else None
    return await p.render(
        request,
        "unsubscribe.html",
        status=200 if reply.ok else 404,
        token=token,
        info=info,
        done=reply.ok,
        undone=False,
    )


@router.post("/unsubscribe/undo")
async def resubscribe(request: Request, p: P) -> Response:
    form = await read_form(request)
    token = _token_of(request, form)
    reply = await call_notifications(
        p, "POST", "/unsubscribe/undo", json_body={"token": token or ""}
    )
    info = Obj(reply.body) if reply.ok else None
    return await p.render(
        request,
        "unsubscribe.html",
        status=200 if reply.ok else 404,
        token=token,
        info=info,
        done=False,
        undone=reply.ok,
    )
