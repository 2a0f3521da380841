"""Checkout: buying an offering from the storefront, and what follows it.

- ``GET /b/{slug}/offerings/{id}/checkout``: who is buying. An anonymous visitor
  gives a name and an email; a logged-in account is "Buying as …". The form
  carries an Idempotency-Key made for this page view, so a double submit (or a
  reload of the next step) finds the same order at payments, never a second one.
- ``POST`` of that form: payments creates the order (its price comes from the
  catalog, never from here). Free: paid at once, on to the confirmation. Paid:
  the payment step, on the same URL: Stripe.js's card form
  (``confirmCardSetup``) and, for a logged-in buyer, their saved cards as
  one-click buttons.
- ``POST /orders/{id}/pay`` and ``/refresh``: the card (or saved card) to
  payments, and the order's state back after ``confirmCardPayment`` (3-D
  Secure). JSON for the page's script, a redirect for a plain form post.
- ``GET /orders/{id}/processing``: reloads itself until payments says paid
  (then the confirmation) or failed (the failure page, with a retry). It only
  ever reads the order: granting is payments' and the webhook's business.
- ``GET /claim?token=…``: the emailed link of an account a purchase created;
  its button (a POST) sets the password and logs in.

An anonymous buyer proves the order is theirs with the order's access token,
kept in an HttpOnly cookie whose path is that order's pages only.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.pages.billing import charge_text, subscription_of_order
from gateway.pages.common import (
    Obj,
    P,
    call_catalog,
    call_clients,
    call_payments,
    guarded,
    logged_in,
    public_fields,
    read_form,
)
from gateway.pages.rendering import Pages
from gateway.pages.storefront import (
    _must,
    _valid_slug,
    not_found,
    offering_card,
    storefront_context,
)
from gateway.security import CHECKOUT_PATH, STRIPE_MARKER, new_csrf_token
from gateway.sessions import ActiveSession
from gateway.upstream import Reply, UpstreamUnavailable
from kit.logging import get_logger
from kit.money import amount

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)

ORDER_COOKIE = "clientele_order"
ORDER_COOKIE_DAYS = 7
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,200}$")
CHECKOUT = "storefront_checkout.html"
PAY = "checkout_pay.html"
PROCESSING_REFRESH_SECONDS = 2
DECLINED = "Your card was declined. Nothing was charged. Try another card."


def new_idempotency_key() -> str:
    return secrets.token_urlsafe(24)


def money_label(minor: int | None, currency: str | None) -> str:
    if minor is None or not currency:
        return ""
    return amount(minor, currency)


def order_view(data: dict[str, Any]) -> Obj:
    """An OrderOut as the templates read it."""
    currency = str(data.get("currency") or "")
    amount_minor = data.get("amount_minor")
    discount = data.get("discount_minor") or 0
    return Obj(
        {
            **data,
            "id": str(data["id"]),
            "status": str(data.get("status") or ""),
            "offering_name": data.get("offering_name") or "",
            "amount_label": money_label(amount_minor, currency),
            "discount_label": money_label(discount, currency) if discount else "",
            "discount_code": data.get("discount_code"),
            "billing": Obj(data.get("billing") or {}),
            "buyer_email": data.get("buyer_email") or "",
            "buyer_name": data.get("buyer_name") or "",
            "failure_reason": data.get("failure_reason"),
            "free": amount_minor == 0,
            "subscription_id": data.get("subscription_id"),
            "recurring": _recurring(data.get("billing")),
            # "€50.00 every month", "€100.00 today, then 2 more monthly installments"
            "charge_text": charge_text(data.get("billing"), amount_minor, currency),
        }
    )


def _recurring(billing: Any) -> bool:
    return isinstance(billing, dict) and billing.get("type") in ("recurring", "payment_plan")


def card_view(data: dict[str, Any]) -> Obj:
    brand = str(data.get("brand") or "card")
    month, year = data.get("exp_month"), data.get("exp_year")
    expiry = f"{int(month):02d}/{int(year) % 100:02d}" if month and year else ""
    return Obj(
        {
            "id": str(data.get("id") or data.get("payment_method_id") or ""),
            "brand": brand.replace("_", " ").title() if brand != "amex" else "American Express",
            "last4": str(data.get("last4") or ""),
            "expiry": expiry,
        }
    )


def saved_cards(cards: list[dict[str, Any]]) -> list[Obj]:
    """One button per card: the same card entered twice is two saved cards at Stripe
    (two PaymentMethods), but the same brand, number ending and expiry to the buyer."""
    shown: dict[tuple[str, str, str], Obj] = {}
    for data in cards:
        card = card_view(data)
        shown.setdefault((card.brand, card.last4, card.expiry), card)
    return list(shown.values())


def _token(active: ActiveSession | None) -> str | None:
    return active.access_token if active else None


def _stripe_page(response: Response) -> Response:
    """Let this checkout page load Stripe.js (the middleware allows it on checkout paths only)."""
    response.headers[STRIPE_MARKER.decode()] = "1"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _order_path(order_id: uuid.UUID | str) -> str:
    return f"/orders/{order_id}"


def _remember_order(p: Pages, response: Response, order_id: str, access_token: str | None) -> None:
    """The order's access token, sent back only to that order's own pages."""
    if not access_token:
        return
    response.set_cookie(
        ORDER_COOKIE,
        access_token,
        max_age=ORDER_COOKIE_DAYS * 86400,
        path=_order_path(order_id),
        httponly=True,
        samesite="lax",
        secure=p.settings.secure_cookies,
    )


def _access_token_of(body: dict[str, Any]) -> str | None:
    order = body.get("order") if isinstance(body.get("order"), dict) else body
    token = body.get("access_token") or (order or {}).get("access_token")
    return str(token) if token else None


# -- the offering and who is buying -------------------------------------------------------------


async def _offering(
    p: Pages, request: Request, slug: str, offering_id: uuid.UUID
) -> tuple[dict[str, Any], ActiveSession | None] | Response:
    if not _valid_slug(slug):
        return await not_found(p, request, "There is no such business.")
    active = await p.viewer(request)
    reply = await call_catalog(
        p, "GET", f"/public/businesses/{slug}/offerings/{offering_id}", token=_token(active)
    )
    if reply.status in (401, 403, 404):
        return await not_found(p, request, "This offering does not exist or is not available.")
    return _must(reply), active


def _checkout_context(data: dict[str, Any], active: ActiveSession | None) -> dict[str, Any]:
    offering = offering_card(data["offering"])
    raw = data["offering"]
    return {
        **storefront_context(data["business"]),
        "offering": offering,
        "recurring": _recurring(raw.get("billing")),
        "charge": charge_text(raw.get("billing"), raw.get("price_minor"), raw.get("currency")),
        "can_buy": bool(data.get("can_buy", True)),
        "buyer": active.principal if active else None,
        "free": offering.billing.get("type") == "free",
        "checkout_path": f"/b/{data['business']['slug']}/offerings/{offering.id}/checkout",
    }


def _appointment_id(value: str | None) -> str | None:
    """The appointment a booking page sends along (``?appointment_id=``): the order
    carries it to payments, whose paid event makes the request."""
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


@router.get("/b/{slug}/offerings/{offering_id}/checkout")
async def checkout_page(request: Request, slug: str, offering_id: uuid.UUID, p: P) -> Response:
    found = await _offering(p, request, slug, offering_id)
    if isinstance(found, Response):
        return found
    data, active = found
    response = await p.render(
        request,
        CHECKOUT,
        **_checkout_context(data, active),
        idempotency_key=new_idempotency_key(),
        appointment_id=_appointment_id(request.query_params.get("appointment_id")),
    )
    return _stripe_page(response)


@router.post("/b/{slug}/offerings/{offering_id}/checkout")
async def start_order(request: Request, slug: str, offering_id: uuid.UUID, p: P) -> Response:
    form = await read_form(request)
    found = await _offering(p, request, slug, offering_id)
    if isinstance(found, Response):
        return found
    data, active = found
    appointment_id = _appointment_id(form.get("appointment_id"))
    context = {**_checkout_context(data, active), "appointment_id": appointment_id}
    key = form.get("idempotency_key", "")
    if not KEY_PATTERN.match(key):
        key = new_idempotency_key()
    if stop := await guarded(
        p, request, form, CHECKOUT, "checkout", **context, idempotency_key=key
    ):
        return _stripe_page(stop)
    body: dict[str, Any] = {"offering_id": str(offering_id)}
    if form.get("discount_code", "").strip():
        body["discount_code"] = form["discount_code"].strip()
    if appointment_id:
        body["appointment_id"] = appointment_id
    if active is None:
        body |= {"name": form.get("name", "").strip(), "email": form.get("email", "").strip()}
    reply = await call_payments(
        p,
        "POST",
        "/orders",
        json_body=body,
        token=_token(active),
        headers={"Idempotency-Key": key},
    )
    if not reply.ok:
        return await _refused(p, request, reply, form, context)
    result = reply.body
    order = order_view(result["order"])
    access_token = _access_token_of(result)
    if order.status == "paid":
        done = p.redirect(_order_path(order.id))
        _remember_order(p, done, order.id, access_token)
        return done
    if order.status == "failed":  # this key's order failed before: a new one for a new try
        return await _refused(p, request, reply, form, context, error=_failure_text(order))
    stripe = Obj(result.get("stripe") or {})
    response = await p.render(
        request,
        PAY,
        **context,
        order=order,
        stripe=stripe,
        stripe_js_url=p.settings.stripe_js_url,
        cards=saved_cards(result.get("cards") or []),
        buyer_name=order.buyer_name,
        buyer_email=order.buyer_email,
        # A failed card needs a new order: this form makes it, with a key of its own.
        retry=public_fields(form) | {"idempotency_key": new_idempotency_key()},
    )
    _remember_order(p, response, order.id, access_token)
    return _stripe_page(response)


async def _refused(
    p: Pages,
    request: Request,
    reply: Reply,
    form: dict[str, str],
    context: dict[str, Any],
    error: str | None = None,
) -> Response:
    if reply.status >= 500 or reply.status == 0:
        raise UpstreamUnavailable(f"payments answered {reply.status}")
    errors = reply.field_errors() if reply.status == 422 else {}
    errors = {k: v for k, v in errors.items() if k in {"name", "email", "discount_code"}}
    if error is None and not errors:
        error = reply.detail or "This offering cannot be bought right now."
    response = await p.render(
        request,
        CHECKOUT,
        status=reply.status if not reply.ok else 409,
        form=public_fields(form),  # type: ignore[arg-type]
        errors=errors,
        error=error,
        # A refusal created nothing: the next try gets a key of its own.
        idempotency_key=new_idempotency_key(),
        **context,
    )
    return _stripe_page(response)


# -- paying -------------------------------------------------------------------------------------


def _failure_text(order: Obj) -> str:
    reason = order.get("failure_reason")
    if reason:
        text = str(reason).rstrip(".")
        return f"{text}. Nothing was charged. Try another card."
    return DECLINED


def _order_auth(request: Request) -> dict[str, str] | None:
    token = request.cookies.get(ORDER_COOKIE)
    return {"access_token": token} if token else None


async def _order_call(
    p: Pages, request: Request, method: str, order_id: uuid.UUID, suffix: str = "", **kwargs: Any
) -> Reply:
    active = await p.viewer(request)
    return await call_payments(
        p,
        method,
        f"/orders/{order_id}{suffix}",
        token=_token(active),
        params=_order_auth(request),
        **kwargs,
    )


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


async def _settled(
    p: Pages, request: Request, order_id: uuid.UUID, reply: Reply, back: str | None
) -> Response:
    """What the page does next after pay/refresh: JSON for the script, else a redirect."""
    if reply.status >= 500:
        raise UpstreamUnavailable(f"payments answered {reply.status}")
    if not reply.ok:
        detail = reply.detail or "This payment could not be made."
        if _wants_json(request):
            return JSONResponse({"status": "error", "error": detail}, status_code=reply.status)
        return await p.render(
            request,
            "checkout_failed.html",
            status=reply.status,
            order=None,
            error=detail,
            retry_href=back,
        )
    order = order_view(_order_of(reply.body))
    processing = _with_back(f"{_order_path(order_id)}/processing", back)
    answer: dict[str, Any] = {"status": order.status, "next": processing}
    if order.status == "requires_action":
        answer["client_secret"] = _client_secret(reply.body)
    elif order.status == "failed":
        answer["error"] = _failure_text(order)
    if _wants_json(request):
        return JSONResponse(answer)
    return p.redirect(processing)


def _client_secret(body: dict[str, Any]) -> str | None:
    for source in (body, body.get("order") or {}, body.get("action") or {}):
        if isinstance(source, dict):
            for name in ("client_secret", "payment_intent_client_secret"):
                if source.get(name):
                    return str(source[name])
    return None


async def _checked_form(p: Pages, request: Request) -> tuple[dict[str, str], Response | None]:
    form = await read_form(request)
    if p.csrf_ok(request, form.get("csrf_token")):
        return form, None
    if _wants_json(request):
        message = "This page expired. Reload it and try again."
        return form, JSONResponse({"status": "error", "error": message}, status_code=403)
    request.state.csrf_token = new_csrf_token()
    return form, await p.render(
        request,
        "error.html",
        status=403,
        title="Please try again",
        message="This page expired. Go back, reload it and try again.",
    )


@router.post("/orders/{order_id}/pay")
async def pay(request: Request, order_id: uuid.UUID, p: P) -> Response:
    form, stop = await _checked_form(p, request)
    if stop is not None:
        return stop
    back = _back(form.get("back"))
    method = form.get("payment_method_id", "").strip()
    if not method or len(method) > 200:
        error = "Enter your card details first."
        if _wants_json(request):
            return JSONResponse({"status": "error", "error": error}, status_code=422)
        return p.redirect(_with_back(f"{_order_path(order_id)}/processing", back))
    reply = await _order_call(
        p, request, "POST", order_id, "/pay", json_body={"payment_method_id": method}
    )
    return await _settled(p, request, order_id, reply, back)


@router.post("/orders/{order_id}/refresh")
async def refresh(request: Request, order_id: uuid.UUID, p: P) -> Response:
    form, stop = await _checked_form(p, request)
    if stop is not None:
        return stop
    reply = await _order_call(p, request, "POST", order_id, "/refresh")
    return await _settled(p, request, order_id, reply, _back(form.get("back")))


# -- after paying -------------------------------------------------------------------------------


async def _order(p: Pages, request: Request, order_id: uuid.UUID) -> Obj | Response:
    reply = await _order_call(p, request, "GET", order_id)
    if reply.status in (401, 403, 404, 422):
        return await not_found(p, request, "There is no such order, or it is not yours.")
    if not reply.ok or not isinstance(reply.body, dict):
        raise UpstreamUnavailable(f"payments answered {reply.status}")
    return order_view(_order_of(reply.body))


def _order_of(body: dict[str, Any]) -> dict[str, Any]:
    """An OrderOut, bare or wrapped as ``{"order": …}``."""
    inner = body.get("order")
    return inner if isinstance(inner, dict) else body


def _back(value: str | None) -> str | None:
    """The checkout page to go back to for another try (only ever a checkout path)."""
    return value if value and CHECKOUT_PATH.match(value) else None


def _with_back(path: str, back: str | None) -> str:
    return f"{path}?{urlencode({'back': back})}" if back else path


async def _failed(p: Pages, request: Request, order: Obj) -> Response:
    response = await p.render(
        request,
        "checkout_failed.html",
        status=200,
        order=order,
        error=_failure_text(order),
        retry_href=_back(request.query_params.get("back")),
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("/orders/{order_id}/processing")
async def processing(request: Request, order_id: uuid.UUID, p: P) -> Response:
    order = await _order(p, request, order_id)
    if isinstance(order, Response):
        return order
    back = _back(request.query_params.get("back"))
    if order.status == "paid":
        return p.redirect(_with_back(_order_path(order_id), back))
    if order.status in ("failed", "canceled"):
        return await _failed(p, request, order)
    response = await p.render(
        request,
        "checkout_processing.html",
        order=order,
        refresh_seconds=PROCESSING_REFRESH_SECONDS,
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("/orders/{order_id}")
async def confirmation(request: Request, order_id: uuid.UUID, p: P) -> Response:
    order = await _order(p, request, order_id)
    if isinstance(order, Response):
        return order
    if order.status in ("failed", "canceled"):
        return await _failed(p, request, order)
    back = _back(request.query_params.get("back"))
    if order.status not in ("paid", "refunded"):
        return p.redirect(_with_back(f"{_order_path(order_id)}/processing", back))
    subscription = None
    if order.subscription_id and order.status == "paid":
        active = await p.viewer(request)
        subscription = await subscription_of_order(p, str(order.subscription_id), _token(active))
    response = await p.render(
        request, "checkout_done.html", order=order, shop_href=back, subscription=subscription
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# -- claiming an account a purchase created -----------------------------------------------------


@router.get("/claim")
async def claim_page(request: Request, p: P) -> Response:
    token = request.query_params.get("token")
    error = None if token else "This link is incomplete. Use the link from your email."
    response = await p.render(request, "claim.html", token=token, error=error)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.post("/claim")
async def claim(request: Request, p: P) -> Response:
    form = await read_form(request)
    token = form.get("token")
    if stop := await guarded(p, request, form, "claim.html", "password_reset", token=token):
        return stop
    reply = await call_clients(
        p,
        "POST",
        "/claims/consume",
        json_body={"token": token or "", "password": form.get("password", "")},
    )
    if reply.ok:
        return await logged_in(p, reply.body, "/home", "account_claimed")
    if reply.status >= 500:
        raise UpstreamUnavailable(f"clients answered {reply.status}")
    errors = reply.field_errors() if reply.status == 422 else {}
    if errors.get("password"):
        return await p.render(
            request, "claim.html", status=422, token=token, errors={"password": errors["password"]}
        )
    return await p.render(
        request,
        "claim.html",
        status=400 if reply.status == 422 else reply.status,
        token=None,
        error="This link has expired or was already used. "
        "Use “Forgot password” on the login page to get a new one.",
    )
