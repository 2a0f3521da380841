"""Coach pages of a business: clients, invitations, groups, campaigns, emails sent.

Each page calls the services' APIs with the coach's token; the services
decide what the coach may see (another business is a 404 there, and here).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.pages.common import (
    FormData,
    Obj,
    P,
    body_of,
    call_clients,
    call_notifications,
    expired_form,
    read_form,
    read_form_lists,
)
from gateway.pages.rendering import Pages
from gateway.sessions import ActiveSession
from gateway.upstream import Reply
from kit.validation import safe_next_path

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
CLIENT_STATUSES = ("active", "archived", "all")
CLIENT_SORTS = ("-created_at", "created_at", "name", "-name", "email", "-email")
INVITATION_STATUSES = ("pending", "accepted", "expired", "revoked")
EMAIL_STATUSES = ("queued", "sending", "sent", "failed")


class CoachPage:
    """The logged-in coach and the business of the page, or the response to give instead."""

    def __init__(self, active: ActiveSession, business: Obj) -> None:
        self.active = active
        self.business = business
        self.base = f"/businesses/{business['id']}"

    @property
    def token(self) -> str:
        return self.active.access_token


async def coach_page(p: Pages, request: Request, business_id: uuid.UUID) -> CoachPage | Response:
    active = await p.viewer(request)
    if active is None:
        return p.redirect(f"/login?next={request.url.path}", notice="login_required")
    me = await call_clients(p, "GET", "/me", token=active.access_token)
    businesses = me.body.get("businesses", []) if me.ok and isinstance(me.body, dict) else []
    business = next((b for b in businesses if b["id"] == str(business_id)), None)
    if business is None:
        return await p.render(
            request,
            "error.html",
            status=404,
            title="Not found",
            message="There is no such business in your account.",
        )
    return CoachPage(active, Obj(business))


async def coach_form(
    p: Pages, request: Request, business_id: uuid.UUID
) -> tuple[CoachPage, FormData, dict[str, list[str]]] | Response:
    """A coach's form post: the page, the form's values and its repeated fields, or the
    response to give instead (log in, no such business, an expired form)."""
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    form, lists = await read_form_lists(request)
    if stop := await expired_form(p, request, form):
        return stop
    return page, form, lists


def _offset(request: Request) -> int:
    try:
        return max(0, int(request.query_params.get("offset", "0")))
    except ValueError:
        return 0


def _choice(value: str | None, allowed: tuple[str, ...], default: str | None) -> str | None:
    return value if value in allowed else default


def _uuid(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


def _back(page: CoachPage, form: dict[str, str], default: str) -> str:
    """Where a form goes afterwards: its own ``next`` if it stays inside this business."""
    wanted = safe_next_path(form.get("next"))
    return wanted if wanted and wanted.startswith(page.base) else default


# -- clients -----------------------------------------------------------------------------


@router.get("/businesses/{business_id}/clients")
async def clients_list(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    query = request.query_params
    q = (query.get("q") or "").strip() or None
    status = _choice(query.get("status"), CLIENT_STATUSES, "active")
    group = _uuid(query.get("group"))
    sort = _choice(query.get("sort"), CLIENT_SORTS, "-created_at")
    offset = _offset(request)
    params = {
        "status": status or "active",
        "sort": sort or "-created_at",
        "limit": str(PAGE_SIZE),
        "offset": str(offset),
    }
    if q:
        params["q"] = q[:200]
    if group:
        params["group_id"] = group
    clients = body_of(
        await call_clients(p, "GET", f"{page.base}/clients", token=page.token, params=params)
    )
    groups = body_of(await call_clients(p, "GET", f"{page.base}/groups", token=page.token))
    return await p.render(
        request,
        "clients_list.html",
        business=page.business,
        clients=[Obj(c, groups=[Obj(g) for g in c["groups"]]) for c in clients["items"]],
        total=clients["total"],
        limit=PAGE_SIZE,
        offset=offset,
        q=q,
        status_filter=status,
        group_filter=group,
        sort=sort,
        groups=[Obj(g) for g in groups["items"]],
    )


@router.get("/businesses/{business_id}/clients/{client_id}")
async def client_profile(
    request: Request, business_id: uuid.UUID, client_id: uuid.UUID, p: P
) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    reply = await call_clients(p, "GET", f"{page.base}/clients/{client_id}", token=page.token)
    if reply.status == 404:
        return await p.render(
            request,
            "error.html",
            status=404,
            title="Not found",
            message="There is no such client in this business.",
        )
    client = body_of(reply)
    groups = body_of(await call_clients(p, "GET", f"{page.base}/groups", token=page.token))
    # Agreements signed and worksheets answered; a clients service that cannot say only
    # leaves the section out.
    found = await call_clients(p, "GET", f"{page.base}/clients/{client_id}/forms", token=page.token)
    client_forms = found.body if found.ok and isinstance(found.body, dict) else None
    return await p.render(
        request,
        "client_profile.html",
        business=page.business,
        client=Obj(client, groups=[Obj(g) for g in client["groups"]]),
        timeline=[Obj(e) for e in client["timeline"]],
        groups=[Obj(g) for g in groups["items"]],
        agreements=[Obj(a) for a in (client_forms or {}).get("agreements", [])],
        worksheets=[Obj(w) for w in (client_forms or {}).get("worksheets", [])],
    )


@router.post("/businesses/{business_id}/clients/{client_id}/{action}")
async def client_action(
    request: Request, business_id: uuid.UUID, client_id: uuid.UUID, action: str, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, _, _ = posted
    if action not in ("archive", "restore"):
        return await p.render(
            request, "error.html", status=404, title="Not found", message="There is no page here."
        )
    reply = await call_clients(
        p, "POST", f"{page.base}/clients/{client_id}/{action}", token=page.token
    )
    to = f"{page.base}/clients/{client_id}"
    if reply.status == 404:
        return p.redirect(f"{page.base}/clients")
    return p.redirect(to, notice="client_archived" if action == "archive" else "client_restored")


# -- invitations -------------------------------------------------------------------------


@router.get("/businesses/{business_id}/invite")
async def invite_page(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    quota = body_of(
        await call_clients(p, "GET", f"{page.base}/invitations/quota", token=page.token)
    )
    return await p.render(
        request,
        "invite.html",
        business=page.business,
        results=None,
        counts=None,
        remaining_today=quota["remaining_today"],
    )


@router.post("/businesses/{business_id}/invite")
async def invite(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    form = await read_form(request)
    context: dict[str, Any] = {
        "business": page.business,
        "results": None,
        "counts": None,
        "form": {"addresses": form.get("addresses", "")},
    }
    if not p.csrf_ok(request, form.get("csrf_token")):
        return await p.render(
            request,
            "invite.html",
            status=403,
            remaining_today=None,
            error="This form expired. Please try again.",
            **context,
        )
    reply = await call_clients(
        p,
        "POST",
        f"{page.base}/invitations",
        token=page.token,
        json_body={"addresses": form.get("addresses", "")},
    )
    if reply.ok:
        return await p.render(
            request,
            "invite.html",
            business=page.business,
            form={},
            results=[Obj(r) for r in reply.body["results"]],
            counts=Obj(reply.body["counts"]),
            remaining_today=reply.body["remaining_today"],
        )
    if reply.status in (422, 429):
        remaining = reply.body.get("remaining_today") if isinstance(reply.body, dict) else None
        return await p.render(
            request,
            "invite.html",
            status=reply.status,
            errors=reply.field_errors(),
            error=reply.detail,
            remaining_today=remaining,
            **context,
        )
    body_of(reply)
    return Response(status_code=500)


@router.get("/businesses/{business_id}/invitations")
async def invitations_list(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    status = _choice(request.query_params.get("status"), INVITATION_STATUSES, None)
    offset = _offset(request)
    params = {"limit": str(PAGE_SIZE), "offset": str(offset)}
    if status:
        params["status"] = status
    listing = body_of(
        await call_clients(p, "GET", f"{page.base}/invitations", token=page.token, params=params)
    )
    return await p.render(
        request,
        "invitations_list.html",
        business=page.business,
        invitations=[Obj(i) for i in listing["items"]],
        total=listing["total"],
        limit=PAGE_SIZE,
        offset=offset,
        status_filter=status,
    )


@router.post("/businesses/{business_id}/invitations/{invitation_id}/{action}")
async def invitation_action(
    request: Request, business_id: uuid.UUID, invitation_id: uuid.UUID, action: str, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, _, _ = posted
    if action not in ("resend", "revoke"):
        return await p.render(
            request, "error.html", status=404, title="Not found", message="There is no page here."
        )
    reply = await call_clients(
        p, "POST", f"{page.base}/invitations/{invitation_id}/{action}", token=page.token
    )
    notice = {
        200: "invitation_resent" if action == "resend" else "invitation_revoked",
        429: "invitation_quota",
        409: "invitation_unchanged",
    }.get(reply.status)
    return p.redirect(f"{page.base}/invitations", notice=notice)


# -- groups ------------------------------------------------------------------------------


async def _form_lists(request: Request) -> tuple[dict[str, str], list[str]]:
    """A posted form, plus every value of its ``client_ids`` checkboxes."""
    raw = await request.form()
    single = {k: v for k, v in raw.items() if isinstance(v, str)}
    ids = [v for v in raw.getlist("client_ids") if isinstance(v, str) and _uuid(v)]
    return single, ids


async def _groups_page(
    p: Pages, request: Request, page: CoachPage, *, status: int = 200, **context: Any
) -> Response:
    groups = body_of(await call_clients(p, "GET", f"{page.base}/groups", token=page.token))
    return await p.render(
        request,
        "groups_list.html",
        status=status,
        business=page.business,
        groups=[Obj(g) for g in groups["items"]],
        **context,
    )


@router.get("/businesses/{business_id}/groups")
async def groups_list(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    return await _groups_page(p, request, page)


@router.post("/businesses/{business_id}/groups")
async def create_group(request: Request, business_id: uuid.UUID, p: P) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, _ = posted
    reply = await call_clients(
        p, "POST", f"{page.base}/groups", token=page.token, json_body={"name": form.get("name", "")}
    )
    if reply.ok:
        return p.redirect(f"{page.base}/groups/{reply.body['id']}", notice="group_created")
    errors = reply.field_errors() or {"name": reply.detail}
    return await _groups_page(
        p, request, page, status=reply.status, form={"name": form.get("name", "")}, errors=errors
    )


async def _group_page(
    p: Pages,
    request: Request,
    page: CoachPage,
    group_id: uuid.UUID,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    reply = await call_clients(p, "GET", f"{page.base}/groups/{group_id}", token=page.token)
    if reply.status == 404:
        return await p.render(
            request,
            "error.html",
            status=404,
            title="Not found",
            message="There is no such group in this business.",
        )
    group = body_of(reply)
    clients = body_of(
        await call_clients(
            p,
            "GET",
            f"{page.base}/clients",
            token=page.token,
            params={"status": "active", "sort": "name", "limit": "200"},
        )
    )
    members = {m["id"] for m in group["members"]}
    return await p.render(
        request,
        "group_detail.html",
        status=status,
        business=page.business,
        group=Obj(group),
        members=[Obj(m) for m in group["members"]],
        candidates=[Obj(c) for c in clients["items"] if c["id"] not in members],
        **context,
    )


@router.get("/businesses/{business_id}/groups/{group_id}")
async def group_detail(
    request: Request, business_id: uuid.UUID, group_id: uuid.UUID, p: P
) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    return await _group_page(p, request, page, group_id)


@router.post("/businesses/{business_id}/groups/{group_id}")
async def rename_group(
    request: Request, business_id: uuid.UUID, group_id: uuid.UUID, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, _ = posted
    reply = await call_clients(
        p,
        "PATCH",
        f"{page.base}/groups/{group_id}",
        token=page.token,
        json_body={"name": form.get("name", "")},
    )
    if reply.ok:
        return p.redirect(f"{page.base}/groups/{group_id}", notice="group_renamed")
    return await _group_page(
        p,
        request,
        page,
        group_id,
        status=reply.status,
        form={"name": form.get("name", "")},
        errors=reply.field_errors() or {"name": reply.detail},
    )


@router.post("/businesses/{business_id}/groups/{group_id}/delete")
async def delete_group(
    request: Request, business_id: uuid.UUID, group_id: uuid.UUID, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, _, _ = posted
    await call_clients(p, "DELETE", f"{page.base}/groups/{group_id}", token=page.token)
    return p.redirect(f"{page.base}/groups", notice="group_deleted")


async def _change_members(
    p: Pages, request: Request, business_id: uuid.UUID, group_id: str | None, remove: bool
) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    form, client_ids = await _form_lists(request)
    if stop := await expired_form(p, request, form):
        return stop
    group = _uuid(group_id or form.get("group_id"))
    back = _back(page, form, f"{page.base}/groups/{group}" if group else f"{page.base}/groups")
    if not group or not client_ids:
        return p.redirect(back, notice="nothing_selected")
    path = f"{page.base}/groups/{group}/members" + ("/remove" if remove else "")
    reply = await call_clients(
        p, "POST", path, token=page.token, json_body={"client_ids": client_ids}
    )
    if not reply.ok:
        return p.redirect(back, notice="members_unchanged")
    return p.redirect(back, notice="members_removed" if remove else "members_added")


@router.post("/businesses/{business_id}/groups/members/add")
async def add_to_chosen_group(request: Request, business_id: uuid.UUID, p: P) -> Response:
    """From a client's profile: the group comes from the form."""
    return await _change_members(p, request, business_id, None, remove=False)


@router.post("/businesses/{business_id}/groups/{group_id}/members")
async def add_members(
    request: Request, business_id: uuid.UUID, group_id: uuid.UUID, p: P
) -> Response:
    return await _change_members(p, request, business_id, str(group_id), remove=False)


@router.post("/businesses/{business_id}/groups/{group_id}/members/remove")
async def remove_members(
    request: Request, business_id: uuid.UUID, group_id: uuid.UUID, p: P
) -> Response:
    return await _change_members(p, request, business_id, str(group_id), remove=True)


# -- campaigns ---------------------------------------------------------------------------


def _campaign_body(form: dict[str, str]) -> dict[str, Any]:
    audience = form.get("audience") or "all"
    return {
        "subject": form.get("subject", ""),
        "body_markdown": form.get("body_markdown", ""),
        "discount_code": form.get("discount_code") or None,
        "audience": {"kind": "all"}
        if audience == "all"
        else {"kind": "group", "group_id": audience},
    }


def _campaign_errors(reply: Reply) -> dict[str, str]:
    errors = {}
    if isinstance(reply.body, dict):
        for error in reply.body.get("errors", []):
            field = str(error.get("field", ""))
            errors["audience" if field.startswith("audience") else field] = str(
                error.get("message")
            )
    return errors or ({"subject": reply.detail} if reply.status >= 400 else {})


async def _campaign_form(
    p: Pages,
    request: Request,
    page: CoachPage,
    campaign: dict[str, Any] | None,
    *,
    status: int = 200,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    groups = body_of(await call_clients(p, "GET", f"{page.base}/groups", token=page.token))
    if form is None and campaign is not None:
        audience = campaign["audience"]
        form = {
            "subject": campaign["subject"],
            "body_markdown": campaign["body_markdown"],
            "discount_code": campaign.get("discount_code") or "",
            "audience": "all" if audience["kind"] == "all" else str(audience["group_id"]),
        }
    return await p.render(
        request,
        "campaign_form.html",
        status=status,
        business=page.business,
        campaign=_campaign_obj(campaign) if campaign else None,
        groups=[Obj(g) for g in groups["items"]],
        form=form or {"audience": "all"},
        errors=errors or {},
    )


def _campaign_obj(campaign: dict[str, Any]) -> Obj:
    return Obj(campaign, audience=Obj(campaign["audience"]), counts=Obj(campaign["counts"]))


@router.get("/businesses/{business_id}/campaigns")
async def campaigns_list(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    offset = _offset(request)
    listing = body_of(
        await call_notifications(
            p,
            "GET",
            f"{page.base}/campaigns",
            token=page.token,
            params={"limit": str(PAGE_SIZE), "offset": str(offset)},
        )
    )
    return await p.render(
        request,
        "campaigns_list.html",
        business=page.business,
        campaigns=[_campaign_obj(c) for c in listing["items"]],
        total=listing["total"],
        limit=PAGE_SIZE,
        offset=offset,
    )


@router.get("/businesses/{business_id}/campaigns/new")
async def new_campaign(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    return await _campaign_form(p, request, page, None)


@router.post("/businesses/{business_id}/campaigns")
async def create_campaign(request: Request, business_id: uuid.UUID, p: P) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, _ = posted
    reply = await call_notifications(
        p, "POST", f"{page.base}/campaigns", token=page.token, json_body=_campaign_body(form)
    )
    if reply.ok:
        return p.redirect(f"{page.base}/campaigns/{reply.body['id']}", notice="campaign_saved")
    return await _campaign_form(
        p, request, page, None, status=reply.status, form=form, errors=_campaign_errors(reply)
    )


async def _campaign(p: Pages, page: CoachPage, campaign_id: uuid.UUID) -> dict[str, Any] | None:
    reply = await call_notifications(
        p, "GET", f"{page.base}/campaigns/{campaign_id}", token=page.token
    )
    if reply.status == 404:
        return None
    result: dict[str, Any] = body_of(reply)
    return result


async def _not_found(p: Pages, request: Request) -> Response:
    return await p.render(
        request,
        "error.html",
        status=404,
        title="Not found",
        message="There is no such campaign in this business.",
    )


@router.get("/businesses/{business_id}/campaigns/{campaign_id}")
async def campaign_detail(
    request: Request, business_id: uuid.UUID, campaign_id: uuid.UUID, p: P
) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    campaign = await _campaign(p, page, campaign_id)
    if campaign is None:
        return await _not_found(p, request)
    preview = body_of(
        await call_notifications(
            p, "GET", f"{page.base}/campaigns/{campaign_id}/preview", token=page.token
        )
    )
    response = await p.render(
        request,
        "campaign_detail.html",
        business=page.business,
        campaign=_campaign_obj(campaign),
        preview=Obj(preview),
    )
    # The preview renders in a sandboxed srcdoc frame that inherits this policy.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; object-src 'none'; frame-ancestors 'self'"
    )
    return response


@router.get("/businesses/{business_id}/campaigns/{campaign_id}/edit")
async def edit_campaign(
    request: Request, business_id: uuid.UUID, campaign_id: uuid.UUID, p: P
) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    campaign = await _campaign(p, page, campaign_id)
    if campaign is None:
        return await _not_found(p, request)
    if campaign["status"] != "draft":
        return p.redirect(f"{page.base}/campaigns/{campaign_id}")
    return await _campaign_form(p, request, page, campaign)


@router.post("/businesses/{business_id}/campaigns/{campaign_id}")
async def update_campaign(
    request: Request, business_id: uuid.UUID, campaign_id: uuid.UUID, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, _ = posted
    reply = await call_notifications(
        p,
        "PATCH",
        f"{page.base}/campaigns/{campaign_id}",
        token=page.token,
        json_body=_campaign_body(form),
    )
    if reply.ok:
        return p.redirect(f"{page.base}/campaigns/{campaign_id}", notice="campaign_saved")
    if reply.status == 404:
        return await _not_found(p, request)
    campaign = await _campaign(p, page, campaign_id)
    return await _campaign_form(
        p, request, page, campaign, status=reply.status, form=form, errors=_campaign_errors(reply)
    )


@router.post("/businesses/{business_id}/campaigns/{campaign_id}/{action}")
async def campaign_action(
    request: Request, business_id: uuid.UUID, campaign_id: uuid.UUID, action: str, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, _, _ = posted
    target = f"{page.base}/campaigns/{campaign_id}"
    if action == "send":
        reply = await call_notifications(p, "POST", f"{target}/send", token=page.token)
        return p.redirect(target, notice="campaign_sent" if reply.ok else "campaign_unchanged")
    if action == "delete":
        reply = await call_notifications(p, "DELETE", target, token=page.token)
        if reply.ok:
            return p.redirect(f"{page.base}/campaigns", notice="campaign_deleted")
        return p.redirect(target, notice="campaign_unchanged")
    return await _not_found(p, request)


# -- emails sent -------------------------------------------------------------------------


@router.get("/businesses/{business_id}/emails")
async def business_emails(request: Request, business_id: uuid.UUID, p: P) -> Response:
    """The emails a business sent, for its coaches (the notifications service decides)."""
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    status = _choice(request.query_params.get("status"), EMAIL_STATUSES, None)
    offset = _offset(request)
    params = {"limit": str(PAGE_SIZE), "offset": str(offset)}
    if status:
        params["status"] = status
    reply = body_of(
        await call_notifications(p, "GET", f"{page.base}/emails", token=page.token, params=params)
    )
    return await p.render(
        request,
        "business_emails.html",
        business=page.business,
        emails=[Obj(e) for e in reply["items"]],
        total=reply["total"],
        offset=offset,
        limit=PAGE_SIZE,
        status_filter=status,
    )
