"""A client's billing: saved cards and subscriptions, canceling, and giving a new card.

- ``GET /billing`` (logged in): per business, the saved cards (brand, last 4, expiry)
  and the subscriptions and payment plans (price, status in words, next billing
  date, installments paid, the card used), with "Cancel at period end" for
  recurring ones that may be canceled and "Update card" for active or past-due ones.
- ``POST /billing/subscriptions/{id}/cancel``: payments cancels at the end of the
  period (a payment plan cannot be canceled; payments says so with a 409).
- ``GET /billing/subscriptions/{id}/card``: the new-card page, reached from the
  billing page (logged in) or from the failed-payment email (``?token=…``, no login).
  Stripe.js's Card Element; the page's script asks ``…/card/setup`` for a
  SetupIntent, runs ``confirmCardSetup`` and posts the payment method to ``…/card``.
  A past-due subscription's open invoice is charged again at once by payments.

Every rule (whose subscription, what may be canceled, which token works) lives in
the payments service; these pages only call it and put its answers into words.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.pages.common import Obj, P, call_payments, read_form
from gateway.pages.rendering import Pages
from gateway.pages.storefront import not_found
from gateway.security import STRIPE_MARKER, client_address, new_csrf_token
from gateway.sessions import ActiveSession
from gateway.upstream import Reply, UpstreamUnavailable
from kit.errors import TooManyRequests
from kit.logging import get_logger
from kit.money import amount

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)

MAX_TOKEN_LENGTH = 200  # as payments takes them
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
ADVERBS = {"day": "daily", "week": "weekly", "month": "monthly", "year": "yearly"}
# status -> (words, badge modifier)
STATUSES: dict[str, tuple[str, str]] = {
    "incomplete": ("Awaiting first payment", "badge--neutral"),
    "active": ("Active", "badge--success"),
    "past_due": ("Past due", "badge--danger"),
    "canceled": ("Canceled", "badge--neutral"),
    "completed": ("Completed", "badge--brand"),
}
NO_SUCH_SUBSCRIPTION = (
    "There is no such subscription, or this link has expired. "
    "Log in and open Billing to update your card."
)


# -- words -------------------------------------------------------------------------------------


def _every(interval: str, count: int) -> str:
    return interval if count == 1 else f"{count} {interval}s"


def _count(billing: dict[str, Any]) -> int:
    try:
        return max(1, int(billing.get("interval_count") or 1))
    except (TypeError, ValueError):
        return 1


def charge_text(billing: dict[str, Any] | None, minor: int | None, currency: str | None) -> str:
    """What will be charged, in words: "€50.00 every month", "€100.00 today, then 2 more
    monthly installments"; a one-time price is just the amount."""
    if minor is None or not currency:
        return ""
    money = amount(int(minor), currency)
    billing = billing or {}
    kind = billing.get("type")
    interval = str(billing.get("interval") or "month")
    count = _count(billing)
    if kind == "recurring":
        return f"{money} every {_every(interval, count)}"
    if kind == "payment_plan":
        try:
            more = int(billing.get("installments") or 0) - 1
        except (TypeError, ValueError):
            more = 0
        if more <= 0:
            return f"{money} today"
        noun = "installment" if more == 1 else "installments"
        if count == 1:
            return f"{money} today, then {more} more {ADVERBS.get(interval, interval)} {noun}"
        return f"{money} today, then {more} more {noun}, one every {_every(interval, count)}"
    return money


def day_label(value: Any) -> str:
    """ "22 Nov 2026" from an ISO 8601 date or datetime (as the templates' ui.date)."""
    if not value:
        return ""
    text = str(value)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text[:10]
    return f"{when.day} {MONTHS[when.month - 1]} {when.year}"


def card_view(data: dict[str, Any] | None) -> Obj | None:
    if not data:
        return None
    brand = str(data.get("brand") or "card")
    month, year = data.get("exp_month"), data.get("exp_year")
    expiry = f"{int(month):02d}/{int(year) % 100:02d}" if month and year else ""
    brand_label = "American Express" if brand == "amex" else brand.replace("_", " ").title()
    last4 = str(data.get("last4") or "")
    return Obj(
        {
            "id": str(data.get("id") or ""),
            "brand": brand_label,
            "last4": last4,
            "expiry": expiry,
            "label": f"{brand_label} •••• {last4}",
            "business_id": str(data.get("business_id") or ""),
            "business_name": data.get("business_name") or "",
        }
    )


def subscription_view(data: dict[str, Any]) -> Obj:
    """A SubscriptionOut as the pages read it, with its status in words."""
    status = str(data.get("status") or "")
    billing_type = str(data.get("billing_type") or "recurring")
    plan = billing_type == "payment_plan"
    currency = str(data.get("currency") or "")
    minor = data.get("amount_minor")
    billing: dict[str, Any] = {
        "type": billing_type,
        "interval": data.get("interval") or "month",
        "interval_count": data.get("interval_count") or 1,
    }
    if plan:
        billing["installments"] = data.get("installments_total")
    ending = bool(data.get("cancel_at_period_end")) and status in ("active", "past_due")
    ends_on = data.get("current_period_end") if ending else None
    words, badge = STATUSES.get(status, (status.replace("_", " ").capitalize(), "badge--neutral"))
    if ending:
        words = f"Ends on {day_label(ends_on)}" if ends_on else "Ends soon"
        badge = "badge--warning"
    total, paid = data.get("installments_total"), data.get("installments_paid")
    installments = f"{paid or 0} of {total} paid" if plan and total else ""
    amount_label = amount(int(minor), currency) if minor is not None and currency else ""
    return Obj(
        {
            **data,
            "id": str(data.get("id") or ""),
            "business_id": str(data.get("business_id") or ""),
            "business_name": data.get("business_name") or "",
            "offering_name": data.get("offering_name") or "",
            "status": status,
            "plan": plan,
            "status_label": words,
            "status_badge": badge,
            "ending": ending,
            "ends_on": ends_on,
            "amount_label": amount_label,
            "price_label": data.get("price_label") or charge_text(billing, minor, currency),
            "charge_text": charge_text(billing, minor, currency) if not plan else "",
            "next_charge_at": data.get("next_charge_at"),
            "next_charge_label": day_label(data.get("next_charge_at")),
            "installments": installments,
            "card": card_view(data.get("card")),
            "can_cancel": bool(data.get("can_cancel")) and not plan and not ending,
            "can_update_card": status in ("active", "past_due"),
            "card_path": f"/billing/subscriptions/{data.get('id')}/card",
        }
    )


def by_business(cards: list[Obj], subscriptions: list[Obj]) -> list[Obj]:
    """Cards and subscriptions grouped per business, in the order they first appear."""
    groups: dict[str, Obj] = {}

    def group(business_id: str, name: str) -> Obj:
        return groups.setdefault(
            business_id,
            Obj({"id": business_id, "name": name, "cards": [], "subscriptions": []}),
        )

    for sub in subscriptions:
        group(sub.business_id, sub.business_name)["subscriptions"].append(sub)
    seen: set[tuple[str, str, str, str]] = set()
    for card in cards:
        key = (card.business_id, card.brand, card.last4, card.expiry)
        if key in seen:  # the same card entered twice: two PaymentMethods, one card to a person
            continue
        seen.add(key)
        group(card.business_id, card.business_name)["cards"].append(card)
    return list(groups.values())


# -- upstream ----------------------------------------------------------------------------------


async def my_billing(p: Pages, token: str) -> dict[str, list[Obj]] | None:
    """``GET /me/billing``: the caller's cards and subscriptions; None if payments cannot say."""
    try:
        reply = await call_payments(p, "GET", "/me/billing", token=token)
    except UpstreamUnavailable:
        return None
    if not reply.ok or not isinstance(reply.body, dict):
        return None
    return {
        "cards": [c for c in map(card_view, reply.body.get("cards") or []) if c is not None],
        "subscriptions": [subscription_view(s) for s in reply.body.get("subscriptions") or []],
    }


async def subscription_of_order(p: Pages, subscription_id: str, token: str | None) -> Obj | None:
    """The subscription an order started, for its confirmation page. Payments shows it to
    its logged-in buyer only (an anonymous buyer's order token does not open it): None
    otherwise, and the page then only says what will be charged."""
    if not token:
        return None
    try:
        reply = await call_payments(p, "GET", f"/subscriptions/{subscription_id}", token=token)
    except UpstreamUnavailable:
        return None
    if not reply.ok or not isinstance(reply.body, dict):
        return None
    return subscription_view(reply.body)


def _link_token(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if value and len(value) <= MAX_TOKEN_LENGTH else None


def _params(token: str | None) -> dict[str, str] | None:
    return {"token": token} if token else None


async def _subscription_call(
    p: Pages,
    active: ActiveSession | None,
    method: str,
    subscription_id: uuid.UUID,
    suffix: str = "",
    token: str | None = None,
    **kwargs: Any,
) -> Reply:
    return await call_payments(
        p,
        method,
        f"/subscriptions/{subscription_id}{suffix}",
        token=active.access_token if active else None,
        params=_params(token),
        **kwargs,
    )


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _login_redirect(p: Pages, path: str) -> Response:
    return p.redirect(f"/login?next={path}", notice="login_required")


# -- the billing page --------------------------------------------------------------------------


@router.get("/billing")
async def billing_page(request: Request, p: P) -> Response:
    active = await p.viewer(request)
    if active is None:
        return _login_redirect(p, "/billing")
    reply = await call_payments(p, "GET", "/me/billing", token=active.access_token)
    if reply.status == 401:
        return _login_redirect(p, "/billing")
    if not reply.ok or not isinstance(reply.body, dict):
        raise UpstreamUnavailable(f"payments answered {reply.status}")
    cards = [c for c in map(card_view, reply.body.get("cards") or []) if c is not None]
    subscriptions = [subscription_view(s) for s in reply.body.get("subscriptions") or []]
    return await p.render(
        request,
        "billing.html",
        businesses=by_business(cards, subscriptions),
    )


@router.post("/billing/subscriptions/{subscription_id}/cancel")
async def cancel_subscription(request: Request, subscription_id: uuid.UUID, p: P) -> Response:
    form = await read_form(request)
    active = await p.viewer(request)
    if active is None:
        return _login_redirect(p, "/billing")
    if not p.csrf_ok(request, form.get("csrf_token")):
        request.state.csrf_token = new_csrf_token()
        return await p.render(
            request,
            "error.html",
            status=403,
            title="Please try again",
            message="This page expired. Go back to Billing, reload it and try again.",
        )
    reply = await _subscription_call(p, active, "POST", subscription_id, "/cancel")
    if reply.ok:
        return p.redirect("/billing", notice="subscription_canceled")
    if reply.status == 409:
        return p.redirect("/billing", notice="subscription_not_cancelable")
    if reply.status == 401:
        return _login_redirect(p, "/billing")
    if reply.status in (403, 404, 422):
        return await not_found(p, request, "There is no such subscription, or it is not yours.")
    raise UpstreamUnavailable(f"payments answered {reply.status}")


# -- a new card for a subscription -------------------------------------------------------------


def _stripe_page(response: Response) -> Response:
    """Let this page load Stripe.js (the middleware allows it on card pages only), and
    never send its URL (it may carry the email's token) to another site."""
    response.headers[STRIPE_MARKER.decode()] = "1"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("/billing/subscriptions/{subscription_id}/card")
async def card_page(request: Request, subscription_id: uuid.UUID, p: P) -> Response:
    active = await p.viewer(request)
    token = _link_token(request.query_params.get("token"))
    path = f"/billing/subscriptions/{subscription_id}/card"
    if active is None and token is None:
        return _login_redirect(p, path)
    reply = await _subscription_call(p, active, "GET", subscription_id, token=token)
    if reply.status in (401, 403, 404, 422) or (reply.ok and not isinstance(reply.body, dict)):
        response = await not_found(p, request, NO_SUCH_SUBSCRIPTION)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
    if not reply.ok:
        raise UpstreamUnavailable(f"payments answered {reply.status}")
    subscription = subscription_view(reply.body)
    response = await p.render(
        request,
        "billing_card.html",
        subscription=subscription,
        token=token or "",
        stripe_js_url=p.settings.stripe_js_url,
    )
    return _stripe_page(response) if subscription.can_update_card else response


async def _checked(request: Request, p: Pages) -> tuple[dict[str, str], Response | None]:
    form = await read_form(request)
    if p.csrf_ok(request, form.get("csrf_token")):
        return form, None
    return form, JSONResponse(
        {"status": "error", "error": "This page expired. Reload it and try again."},
        status_code=403,
    )


def _error(reply: Reply, fallback: str) -> JSONResponse:
    if reply.status >= 500 and reply.status != 502:
        log.warning("card_update_upstream_failed", status=reply.status)
        detail = "Payments is not answering right now. Nothing changed; please try again."
        return JSONResponse({"status": "error", "error": detail}, status_code=503)
    if reply.status in (401, 403, 404):
        return JSONResponse({"status": "error", "error": NO_SUCH_SUBSCRIPTION}, status_code=404)
    detail = reply.detail or fallback
    status = reply.status if 400 <= reply.status < 600 else 502
    return JSONResponse({"status": "error", "error": detail}, status_code=status)


@router.post("/billing/subscriptions/{subscription_id}/card/setup")
async def card_setup(request: Request, subscription_id: uuid.UUID, p: P) -> Response:
    """A SetupIntent for the buyer's Stripe customer (JSON for the page's script)."""
    form, stop = await _checked(request, p)
    if stop is not None:
        return stop
    # Each answer is a new SetupIntent at Stripe: limited like starting a checkout.
    try:
        ip = client_address(request.scope, p.settings.trusted_proxy_count)
        await p.state.rate_limits.hit("checkout", ip)
    except TooManyRequests as exc:
        return JSONResponse(
            {"status": "error", "error": exc.detail}, status_code=429, headers=exc.headers
        )
    active = await p.viewer(request)
    token = _link_token(form.get("token"))
    reply = await _subscription_call(p, active, "POST", subscription_id, "/card-setup", token)
    if not reply.ok or not isinstance(reply.body, dict):
        return _error(reply, "The card form could not be prepared. Please reload the page.")
    body = reply.body
    return JSONResponse(
        {
            "status": "ok",
            "publishable_key": body.get("publishable_key") or "",
            "client_secret": body.get("client_secret") or "",
        }
    )


@router.post("/billing/subscriptions/{subscription_id}/card")
async def update_card(request: Request, subscription_id: uuid.UUID, p: P) -> Response:
    """The confirmed card becomes the subscription's; a past-due invoice is paid again."""
    form, stop = await _checked(request, p)
    if stop is not None:
        if _wants_json(request):
            return stop
        return await p.render(
            request,
            "error.html",
            status=403,
            title="Please try again",
            message="This page expired. Go back, reload it and try again.",
        )
    active = await p.viewer(request)
    token = _link_token(form.get("token"))
    method = (form.get("payment_method_id") or "").strip()
    if not method or len(method) > 200:
        answer = {"status": "error", "error": "Enter your card details first."}
        return JSONResponse(answer, status_code=422)
    reply = await _subscription_call(
        p,
        active,
        "POST",
        subscription_id,
        "/card",
        token,
        json_body={"payment_method_id": method},
    )
    if not reply.ok or not isinstance(reply.body, dict):
        return _error(reply, "This card could not be used. Try another card.")
    subscription = subscription_view(reply.body)
    was = form.get("was_status") or ""
    if was == "past_due" and subscription.status == "active":
        message = "Card updated. Your payment went through."
    elif subscription.status == "past_due":
        message = (
            "Card updated, but the payment that is due did not go through yet. "
            "Check the card with your bank, or try another card."
        )
    else:
        message = "Card updated. Future payments will use this card."
    return JSONResponse(
        {
            "status": "ok",
            "message": message,
            "subscription_status": subscription.status,
            "status_label": subscription.status_label,
            "card_label": _card_text(subscription.card),
            "next_charge_label": subscription.next_charge_label,
        }
    )


def _card_text(card: Obj | None) -> str:
    if card is None:
        return ""
    return f"{card.label} (expires {card.expiry})" if card.expiry else card.label
