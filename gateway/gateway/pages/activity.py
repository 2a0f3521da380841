"""The coach's Activity page: purchases, failed payments and refunds, with totals, and
a Refund dialog on each paid order.

The feed and every rule about refunds live in the payments service; this page turns
the filters into its query, writes amounts with :mod:`kit.money`, and posts the
refund form (CSRF-checked) with an Idempotency-Key made for the page view, so a
double submit refunds once.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.pages.coach import CoachPage, coach_form, coach_page
from gateway.pages.common import Obj, P, body_of, call_payments
from gateway.pages.rendering import Pages
from kit.money import amount, to_major, to_minor

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
KINDS = (
    ("purchase", "Purchases"),
    ("renewal", "Renewals"),
    ("failure", "Failed payments"),
    ("payment_failed", "Failed renewals"),
    ("subscription_ended", "Ended subscriptions"),
    ("refund", "Refunds"),
)
PERIODS = (("day", "Day"), ("week", "Week"), ("month", "Month"))
REFUND_FIELDS = {"amount_minor": "amount", "reason": "reason", "revoke_access": "revoke_access"}


def _day(value: str | None) -> str | None:
    try:
        return date.fromisoformat(value).isoformat() if value else None
    except ValueError:
        return None


def filters_of(request: Request) -> dict[str, str]:
    """The page's filters as given (only values the feed knows)."""
    query = request.query_params
    found: dict[str, str] = {}
    kind = query.get("kind")
    if kind in dict(KINDS):
        found["kind"] = kind
    for name in ("from", "to"):
        day = _day(query.get(name))
        if day:
            found[name] = day
    period = query.get("period")
    if period in dict(PERIODS):
        found["period"] = period
    return found


# kind -> (words, badge); a kind the page does not know yet is shown by its name.
KIND_LABELS: dict[str, tuple[str, str]] = {
    "purchase": ("Purchase", "badge--success"),
    "failure": ("Payment failed", "badge--danger"),
    "refund": ("Refund", "badge--warning"),
    "renewal": ("Renewal", "badge--success"),
    "payment_failed": ("Renewal failed", "badge--danger"),
    "subscription_ended": ("Subscription ended", "badge--neutral"),
}
ENDED_REASONS = {
    "canceled": "canceled",
    "payment_failed": "ended after failed payments",
    "completed": "payment plan completed",
}


def _details(item: dict[str, Any]) -> str:
    """The words after the offering's name: why it failed, which installment, …"""
    kind = item.get("kind")
    parts: list[str] = []
    if kind == "refund" and item.get("reason"):
        parts.append(str(item["reason"]))
    if kind in ("failure", "payment_failed"):
        reason = item.get("failure_reason") or item.get("failure_message")
        if reason:
            parts.append(str(reason))
    number, total = item.get("installment"), item.get("installments_total")
    if kind in ("renewal", "payment_failed") and number:
        if total:
            parts.append(f"installment {number} of {total}")
        elif kind == "renewal":
            parts.append(f"payment {number}")
    if kind == "payment_failed" and item.get("attempt"):
        parts.append(f"attempt {item['attempt']}")
    if kind == "subscription_ended":
        reason = item.get("end_reason") or item.get("reason") or item.get("status")
        if reason:
            parts.append(ENDED_REASONS.get(str(reason), str(reason).replace("_", " ")))
    return " · ".join(parts)


def entry_view(item: dict[str, Any]) -> Obj:
    currency = str(item.get("currency") or "")
    refundable = int(item.get("refundable_minor") or 0)
    kind = str(item.get("kind") or "")
    label, badge = KIND_LABELS.get(kind, (kind.replace("_", " ").capitalize(), "badge--neutral"))
    minor = item.get("amount_minor")
    # What every row prints, so a new kind with fewer fields still renders.
    defaults: dict[str, Any] = {
        "order_id": "",
        "offering_name": "",
        "buyer_name": "",
        "buyer_email": "",
        "at": None,
        "order_status": "",
        "refundable_minor": 0,
    }
    return Obj(
        {
            **defaults,
            **{k: v for k, v in item.items() if v is not None or k not in defaults},
            "kind": kind,
            "kind_label": label,
            "kind_badge": badge,
            "details": _details(item),
            # An ended subscription has no amount of its own to show.
            "has_amount": bool(currency)
            and minor is not None
            and not (kind == "subscription_ended" and not minor),
            "amount_label": amount(int(minor or 0), currency) if currency else "",
            "refunded_label": amount(int(item.get("refunded_minor") or 0), currency)
            if item.get("refunded_minor")
            else "",
            "refundable_label": amount(refundable, currency) if refundable else "",
            "refundable_major": to_major(refundable, currency) if refundable else "",
        }
    )


def total_view(total: dict[str, Any]) -> Obj:
    currency = str(total["currency"])
    return Obj(
        total,
        gross_label=amount(int(total["gross_minor"]), currency),
        refunded_label=amount(int(total["refunded_minor"]), currency),
        net_label=amount(int(total["net_minor"]), currency),
    )


async def _activity_page(
    p: Pages, request: Request, page: CoachPage, status: int = 200, **context: Any
) -> Response:
    filters = filters_of(request)
    params = {**filters, "limit": str(PAGE_SIZE)}
    cursor = request.query_params.get("cursor")
    if cursor and len(cursor) <= 300:
        params["cursor"] = cursor
    reply = await call_payments(p, "GET", f"{page.base}/activity", token=page.token, params=params)
    if reply.status == 422 and "cursor" in params:  # a stale or edited cursor: first page
        params.pop("cursor")
        cursor = None
        reply = await call_payments(
            p, "GET", f"{page.base}/activity", token=page.token, params=params
        )
    error = context.pop("error", None)
    if reply.status == 422:  # e.g. "to" before "from"
        error = error or reply.detail or "Please check the filters."
        data: dict[str, Any] = {"items": [], "summary": [], "totals": [], "next_cursor": None}
    else:
        data = body_of(reply)
    next_cursor = data.get("next_cursor")
    return await p.render(
        request,
        "activity.html",
        status=status,
        business=page.business,
        entries=[entry_view(i) for i in data.get("items", [])],
        summary=[total_view(t) for t in data.get("summary", [])],
        totals=[total_view(t) for t in data.get("totals", [])],
        filters=filters,
        kinds=KINDS,
        periods=PERIODS,
        older_url=f"?{urlencode({**filters, 'cursor': next_cursor})}" if next_cursor else None,
        newest_url=f"?{urlencode(filters)}" if cursor else None,
        idempotency_key=secrets.token_urlsafe(24),
        refund=context.pop("refund", None),
        error=error,
        **context,
    )


@router.get("/businesses/{business_id}/activity")
async def activity(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    return await _activity_page(p, request, page)


@router.post("/businesses/{business_id}/orders/{order_id}/refund")
async def refund_order(
    request: Request, business_id: uuid.UUID, order_id: uuid.UUID, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, _ = posted
    values = {k: form.get(k, "") for k in ("amount", "reason", "revoke_access", "currency")}
    errors: dict[str, str] = {}
    body: dict[str, Any] = {"revoke_access": form.get("revoke_access") == "on"}
    text = (form.get("amount") or "").strip()
    if text:
        minor = to_minor(text, form.get("currency") or "USD")
        if minor is None or minor <= 0:
            errors["amount"] = "Enter an amount such as 20 or 20.50, or leave it empty for all."
        else:
            body["amount_minor"] = minor
    reason = (form.get("reason") or "").strip()
    if len(reason) > 500:
        errors["reason"] = "At most 500 characters."
    elif reason:
        body["reason"] = reason
    key = (form.get("idempotency_key") or "").strip()
    if not 8 <= len(key) <= 200:
        key = secrets.token_urlsafe(24)
    refund_state = {"order_id": str(order_id), "form": values, "errors": errors}
    if errors:
        return await _activity_page(p, request, page, status=422, refund=Obj(refund_state))
    reply = await call_payments(
        p,
        "POST",
        f"{page.base}/orders/{order_id}/refunds",
        token=page.token,
        json_body=body,
        headers={"Idempotency-Key": key},
    )
    if reply.ok:
        return p.redirect(f"{page.base}/activity", notice="refund_issued")
    if reply.status >= 500 and reply.status != 502:
        body_of(reply)
    if reply.status == 404:
        general = "This order is not one of this business’s."
    elif reply.status == 502:
        general = "Stripe did not make the refund. Nothing was refunded; please try again."
    else:
        general = None
    for field, message in reply.field_errors().items():
        errors[REFUND_FIELDS.get(field, "amount")] = message
    if general is None and not errors:
        general = reply.detail or "The refund was refused."
    refund_state.update(errors=errors, error=general)
    status = reply.status if reply.status < 500 else 502
    return await _activity_page(p, request, page, status=status, refund=Obj(refund_state))
