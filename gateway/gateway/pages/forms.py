"""A client's agreements to sign, worksheets to fill and purchase history.

- ``GET /agreements/{entitlement_id}`` (logged in): the agreement's exact text as it
  was bought, a typed full name and "I agree"; once signed, who signed and when.
- ``POST /agreements/{entitlement_id}/sign``: the clients service records the name,
  the time, the version and the exact text (once: a second signature is refused).
- ``GET /worksheets/{entitlement_id}``: the worksheet's questions with a text box each
  (one "Your answers" box when it has none), filled with what was saved.
- ``POST /worksheets/{entitlement_id}``: saves the answers (again and again: the last
  save is kept).
- ``GET /purchases``: every purchase the client made, in every business, newest first
  (the client home shows the newest 20).

Only the entitlement's buyer can open these (the clients service answers 404 to anyone
else, and so do these pages). Forms post with the double-submit CSRF token.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.pages.common import Obj, P, call_clients, call_payments, read_form
from gateway.pages.rendering import Pages
from gateway.pages.storefront import not_found
from gateway.security import new_csrf_token
from gateway.upstream import Reply, UpstreamUnavailable
from kit.money import amount

router = APIRouter(include_in_schema=False)

HOME_HISTORY = 20  # purchases on the client home; the rest are on /purchases
HISTORY_PAGE = 50
NO_SUCH_AGREEMENT = "There is no such agreement among your purchases."
NO_SUCH_WORKSHEET = "There is no such worksheet among your purchases."
ENDED = "Access to this purchase has ended (it was refunded or its subscription ended)."


# -- upstream, for the client home -------------------------------------------------------------


async def my_forms(p: Pages, token: str) -> dict[str, Obj]:
    """The caller's agreements and worksheets by entitlement id, signed / answered or not;
    empty when the clients service cannot say (the home then only offers the links)."""
    try:
        reply = await call_clients(p, "GET", "/me/forms", token=token)
    except UpstreamUnavailable:
        return {}
    if not reply.ok or not isinstance(reply.body, dict):
        return {}
    return {str(f.get("entitlement_id")): Obj(f) for f in reply.body.get("items") or []}


def order_view(data: dict[str, Any]) -> Obj:
    """A purchase as the history shows it: the amount and the status in words."""
    currency = str(data.get("currency") or "")
    minor = int(data.get("amount_minor") or 0)
    refunded = int(data.get("refunded_minor") or 0)
    status = str(data.get("status") or "")
    if status == "refunded" or (refunded and refunded >= minor):
        label, badge = "Refunded", "badge--neutral"
    elif refunded:
        label, badge = f"{amount(refunded, currency)} refunded", "badge--warning"
    else:
        label, badge = "Paid", "badge--success"
    return Obj(
        {
            **data,
            "amount_label": amount(minor, currency) if currency and minor else "Free",
            "status_label": label,
            "status_badge": badge,
        }
    )


async def purchase_history(p: Pages, token: str, limit: int, offset: int = 0) -> Obj | None:
    """``GET /me/orders``: {items, total, limit, offset}; None when payments cannot say."""
    try:
        reply = await call_payments(
            p, "GET", "/me/orders", token=token, params={"limit": str(limit), "offset": str(offset)}
        )
    except UpstreamUnavailable:
        return None
    if not reply.ok or not isinstance(reply.body, dict):
        return None
    body = reply.body
    return Obj(
        {
            "items": [order_view(o) for o in body.get("items") or []],
            "total": int(body.get("total") or 0),
            "limit": int(body.get("limit") or limit),
            "offset": int(body.get("offset") or offset),
        }
    )


# -- shared ------------------------------------------------------------------------------------


def _login(p: Pages, path: str) -> Response:
    return p.redirect(f"/login?next={path}", notice="login_required")


async def _expired(p: Pages, request: Request, back: str) -> Response:
    request.state.csrf_token = new_csrf_token()
    return await p.render(
        request,
        "error.html",
        status=403,
        title="Please try again",
        message=f"This page expired. Go back to {back}, reload it and try again.",
    )


def _must(reply: Reply) -> dict[str, Any]:
    if not reply.ok or not isinstance(reply.body, dict):
        raise UpstreamUnavailable(f"clients answered {reply.status}")
    return reply.body


# -- agreements --------------------------------------------------------------------------------


async def _agreement_page(
    p: Pages,
    request: Request,
    agreement: dict[str, Any],
    *,
    status: int = 200,
    name: str = "",
    errors: dict[str, str] | None = None,
    error: str | None = None,
) -> Response:
    return await p.render(
        request,
        "agreement.html",
        status=status,
        agreement=Obj(agreement, signature=Obj(agreement["signature"] or {}) or None),
        form={"name": name},
        errors=errors or {},
        error=error,
    )


@router.get("/agreements/{entitlement_id}")
async def agreement_page(request: Request, entitlement_id: uuid.UUID, p: P) -> Response:
    path = f"/agreements/{entitlement_id}"
    active = await p.viewer(request)
    if active is None:
        return _login(p, path)
    reply = await call_clients(
        p, "GET", f"/me/entitlements/{entitlement_id}/agreement", token=active.access_token
    )
    if reply.status == 401:
        return _login(p, path)
    if reply.status in (404, 422):
        return await not_found(p, request, NO_SUCH_AGREEMENT)
    # The name is typed by the signer, never filled in for them.
    return await _agreement_page(p, request, _must(reply))


@router.post("/agreements/{entitlement_id}/sign")
async def sign_agreement(request: Request, entitlement_id: uuid.UUID, p: P) -> Response:
    path = f"/agreements/{entitlement_id}"
    form = await read_form(request)
    active = await p.viewer(request)
    if active is None:
        return _login(p, path)
    if not p.csrf_ok(request, form.get("csrf_token")):
        return await _expired(p, request, "the agreement")
    name = form.get("name", "")
    reply = await call_clients(
        p,
        "POST",
        f"/me/entitlements/{entitlement_id}/agreement/signature",
        token=active.access_token,
        json_body={"name": name},
    )
    if reply.ok:
        return p.redirect(path, notice="agreement_signed")
    if reply.status == 401:
        return _login(p, path)
    if reply.status == 404:
        return await not_found(p, request, NO_SUCH_AGREEMENT)
    if reply.status not in (409, 422):
        raise UpstreamUnavailable(f"clients answered {reply.status}")
    reason = reply.body.get("reason") if isinstance(reply.body, dict) else None
    if reason == "already_signed":
        return p.redirect(path, notice="agreement_already_signed")
    shown = await call_clients(
        p, "GET", f"/me/entitlements/{entitlement_id}/agreement", token=active.access_token
    )
    agreement = _must(shown)
    if reply.status == 422:
        errors = {"name": reply.field_errors().get("name") or "Type your full name."}
        return await _agreement_page(p, request, agreement, status=422, name=name, errors=errors)
    error = ENDED if reason == "access_ended" else (reply.detail or ENDED)
    return await _agreement_page(p, request, agreement, status=409, name=name, error=error)


# -- worksheets --------------------------------------------------------------------------------


async def _worksheet_page(
    p: Pages,
    request: Request,
    worksheet: dict[str, Any],
    *,
    status: int = 200,
    answers: list[str] | None = None,
    errors: dict[int, str] | None = None,
    error: str | None = None,
) -> Response:
    saved = [str(a.get("answer") or "") for a in worksheet.get("answers") or []]
    questions = list(worksheet.get("questions") or [])
    values = answers if answers is not None else saved
    values = (values + [""] * len(questions))[: len(questions)]
    return await p.render(
        request,
        "worksheet.html",
        status=status,
        worksheet=Obj(worksheet),
        fields=[
            Obj({"index": i, "question": q, "value": values[i], "error": (errors or {}).get(i)})
            for i, q in enumerate(questions)
        ],
        error=error,
    )


@router.get("/worksheets/{entitlement_id}")
async def worksheet_page(request: Request, entitlement_id: uuid.UUID, p: P) -> Response:
    path = f"/worksheets/{entitlement_id}"
    active = await p.viewer(request)
    if active is None:
        return _login(p, path)
    reply = await call_clients(
        p, "GET", f"/me/entitlements/{entitlement_id}/worksheet", token=active.access_token
    )
    if reply.status == 401:
        return _login(p, path)
    if reply.status in (404, 422):
        return await not_found(p, request, NO_SUCH_WORKSHEET)
    return await _worksheet_page(p, request, _must(reply))


def _answer_errors(reply: Reply) -> tuple[dict[int, str], str | None]:
    """Errors on one answer ("answers.2") by its index; the rest for the whole form."""
    by_index: dict[int, str] = {}
    rest: list[str] = []
    body = reply.body if isinstance(reply.body, dict) else {}
    for found in body.get("errors") or []:
        if not isinstance(found, dict):
            continue
        parts = str(found.get("field", "")).split(".")
        message = str(found.get("message") or "is invalid")
        if len(parts) == 2 and parts[0] == "answers" and parts[1].isdigit():
            by_index.setdefault(int(parts[1]), message)
        else:
            rest.append(message)
    general = "; ".join(rest) or None
    if general:
        general = general[:1].upper() + general[1:] + "."
    return by_index, general


@router.post("/worksheets/{entitlement_id}")
async def save_worksheet(request: Request, entitlement_id: uuid.UUID, p: P) -> Response:
    path = f"/worksheets/{entitlement_id}"
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    active = await p.viewer(request)
    if active is None:
        return _login(p, path)
    if not p.csrf_ok(request, form.get("csrf_token")):
        return await _expired(p, request, "the worksheet")
    count = sum(1 for key in form if key.startswith("answer_"))
    answers = [form.get(f"answer_{i}", "") for i in range(min(count, 50))]
    reply = await call_clients(
        p,
        "PUT",
        f"/me/entitlements/{entitlement_id}/worksheet/answers",
        token=active.access_token,
        json_body={"answers": answers},
    )
    if reply.ok:
        return p.redirect(path, notice="worksheet_saved")
    if reply.status == 401:
        return _login(p, path)
    if reply.status == 404:
        return await not_found(p, request, NO_SUCH_WORKSHEET)
    if reply.status not in (409, 422):
        raise UpstreamUnavailable(f"clients answered {reply.status}")
    shown = await call_clients(
        p, "GET", f"/me/entitlements/{entitlement_id}/worksheet", token=active.access_token
    )
    worksheet = _must(shown)
    if reply.status == 409:
        return await _worksheet_page(
            p, request, worksheet, status=409, answers=answers, error=ENDED
        )
    errors, general = _answer_errors(reply)
    return await _worksheet_page(
        p, request, worksheet, status=422, answers=answers, errors=errors, error=general
    )


# -- purchase history --------------------------------------------------------------------------


@router.get("/purchases")
async def purchases_page(request: Request, p: P) -> Response:
    active = await p.viewer(request)
    if active is None:
        return _login(p, "/purchases")
    try:
        offset = max(0, int(request.query_params.get("offset") or 0))
    except ValueError:
        offset = 0
    history = await purchase_history(p, active.access_token, HISTORY_PAGE, offset)
    if history is None:
        raise UpstreamUnavailable("payments could not list the purchases")
    return await p.render(request, "purchases.html", history=history)
