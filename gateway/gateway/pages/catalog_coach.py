"""Coach pages of the catalog: offerings (editor, versions, publish, archive, preview),
collections (editor, preview), discount codes, and the "Embed / Link" dialog.

Like the other coach pages they call the catalog's coach API with the coach's
token, and the catalog decides: another business's ids are a 404 there and
here. Forms post with the double-submit CSRF token; the catalog's field
errors come back next to the fields.
"""

from __future__ import annotations

import html
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.pages.coach import CoachPage, coach_form, coach_page
from gateway.pages.common import Obj, P, body_of, call_catalog
from gateway.pages.rendering import Pages
from gateway.pages.storefront import offering_card, storefront_context
from gateway.upstream import Reply
from kit.money import to_major, to_minor

router = APIRouter(include_in_schema=False)

KINDS = ("appointment", "engagement", "course", "group", "worksheet", "agreement", "package")
BILLING_TYPES = ("free", "one_time", "recurring", "payment_plan")
INTERVALS = ("week", "month", "year")
VISIBILITIES = ("public", "unlisted", "established_only", "groups")
# Catalog field names (last part of the error's field path) -> the form's field.
ERROR_FIELDS = {
    "price_minor": "price",
    "billing": "billing_type",
    "type": "billing_type",
    "details": "kind",
    "percent_off": "amount",
    "amount_off_minor": "amount",
}


# -- shared ---------------------------------------------------------------------------------------


async def _not_found(p: Pages, request: Request, what: str) -> Response:
    return await p.render(
        request,
        "error.html",
        status=404,
        title="Not found",
        message=f"There is no such {what} in this business.",
    )


def _uuids(values: list[str]) -> list[str]:
    found = []
    for value in values:
        try:
            found.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    return list(dict.fromkeys(found))


def _int(form: dict[str, str], name: str, errors: dict[str, str]) -> int | None:
    text = (form.get(name) or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        errors[name] = "Enter a whole number."
        return None


def _errors(reply: Reply, known: set[str]) -> tuple[dict[str, str], str | None]:
    """The catalog's field errors by form field; what fits no field becomes the form's error."""
    placed: dict[str, str] = {}
    rest: list[str] = []
    body = reply.body if isinstance(reply.body, dict) else {}
    for error in body.get("errors", []) if isinstance(body.get("errors"), list) else []:
        if not isinstance(error, dict):
            continue
        path = str(error.get("field", ""))
        message = str(error.get("message", "is invalid"))
        last = path.split(".")[-1]
        target = ERROR_FIELDS.get(last, last)
        parts = path.split(".")
        if target not in known and parts[0] == "details" and len(parts) > 2:
            target = parts[1]  # one line of a list field ("details.questions.3")
        if target not in known and path.startswith("details"):
            target = "kind"
        if target in known:
            placed.setdefault(target, message)
        else:
            rest.append(f"{path}: {message}" if path else message)
    general = "; ".join(rest) or None
    if not placed and general is None and not reply.ok:
        general = reply.detail or "The catalog refused this change. Please check the form."
    return placed, general


async def _groups(p: Pages, page: CoachPage) -> list[Obj]:
    reply = await call_catalog(p, "GET", f"{page.base}/groups", token=page.token)
    return [Obj(g) for g in body_of(reply).get("items", [])]


async def _offerings(p: Pages, page: CoachPage) -> list[dict[str, Any]]:
    reply = await call_catalog(p, "GET", f"{page.base}/offerings", token=page.token)
    items: list[dict[str, Any]] = body_of(reply).get("items", [])
    return items


def shop_link(p: Pages, page: CoachPage, path: str) -> str:
    return f"{p.settings.public_base_url.rstrip('/')}/b/{page.business['slug']}{path}"


def embed_snippets(p: Pages, link: str, name: str) -> dict[str, str]:
    """The direct link, the iframe + script snippet and the button snippet (as HTML text)."""
    base = p.settings.public_base_url.rstrip("/")
    script = f'<script src="{html.escape(base)}/embed.js" async></script>'
    title = html.escape(name)
    src = html.escape(f"{link}?embed=1")
    return {
        "link": link,
        "iframe": (
            f'<iframe src="{src}" title="{title}" data-clientele-embed '
            f'style="width:100%;height:480px;border:0" loading="lazy"></iframe>\n{script}'
        ),
        "button": (
            f'<a href="{html.escape(link)}" data-clientele-button target="_blank" '
            f'rel="noopener">{title}</a>\n{script}'
        ),
    }


# -- offerings: list ------------------------------------------------------------------------------


@router.get("/businesses/{business_id}/offerings")
async def offerings_list(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    offerings = await _offerings(p, page)
    return await p.render(
        request,
        "catalog_offerings.html",
        business=page.business,
        offerings=[Obj(o) for o in offerings],
        shop_url=shop_link(p, page, ""),
    )


# -- offerings: editor ----------------------------------------------------------------------------


def _offering_form(data: dict[str, Any]) -> dict[str, Any]:
    """An offering as the editor's field values."""
    details = data.get("details") or {}
    billing = data.get("billing") or {"type": "one_time"}
    currency = str(data.get("currency") or "USD")
    return {
        "name": data.get("name", ""),
        "description": data.get("description", ""),
        "kind": data.get("kind", "appointment"),
        "duration_minutes": str(details.get("duration_minutes") or ""),
        "buffer_minutes": str(details.get("buffer_minutes") or ""),
        "new_clients_can_self_book": details.get("new_clients_can_self_book", True) is not False,
        "appointment_offering_ids": [str(o) for o in details.get("appointment_offering_ids") or []],
        "credits": str(details.get("credits") or ""),
        "credit_expiry_days": str(details.get("credit_expiry_days") or ""),
        "group_id": str(details.get("group_id") or ""),
        "agreement_text": details.get("agreement_text") or "",
        "questions": "\n".join(details.get("questions") or []),
        "includes": "\n".join(details.get("includes") or []),
        "billing_type": billing.get("type", "one_time"),
        "interval": billing.get("interval", "month"),
        "interval_count": str(billing.get("interval_count") or 1),
        "installments": str(billing.get("installments") or ""),
        "price": ""
        if billing.get("type") == "free"
        else to_major(data.get("price_minor"), currency),
        "currency": currency,
        "visibility": data.get("visibility", "public"),
        "group_ids": [str(g) for g in data.get("group_ids") or []],
        "capacity": str(data.get("capacity") or ""),
    }


NEW_OFFERING = {
    **_offering_form({}),
    "kind": "appointment",
    "duration_minutes": "60",
    "billing_type": "one_time",
    "currency": "USD",
    "price": "",
}

OFFERING_FIELDS = set(NEW_OFFERING) | {"group_ids", "currency"}


def _form_values(form: dict[str, str], multi: dict[str, list[str]]) -> dict[str, Any]:
    """A posted editor form as it is rendered back: lists, and the checkbox as a bool."""
    return {
        **form,
        "group_ids": multi.get("group_ids", []),
        "appointment_offering_ids": multi.get("appointment_offering_ids", []),
        "new_clients_can_self_book": form.get("new_clients_can_self_book") == "on"
        or not form.get("self_book_shown"),
    }


def offering_body(
    form: dict[str, str], multi: dict[str, list[str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The catalog's OfferingIn from the editor's fields, and what could not even be read."""
    errors: dict[str, str] = {}
    kind = form.get("kind") or "appointment"
    details: dict[str, Any] = {}
    if kind == "appointment":
        details["duration_minutes"] = _int(form, "duration_minutes", errors)
        details["buffer_minutes"] = _int(form, "buffer_minutes", errors)
        if form.get("self_book_shown"):  # an unchecked box is absent from the post
            details["new_clients_can_self_book"] = form.get("new_clients_can_self_book") == "on"
    elif kind == "engagement":
        details["credits"] = _int(form, "credits", errors)
        expiry = _int(form, "credit_expiry_days", errors)
        if expiry is not None:
            details["credit_expiry_days"] = expiry
        details["appointment_offering_ids"] = _uuids(multi.get("appointment_offering_ids", []))
    elif kind == "group":
        details["group_id"] = form.get("group_id") or None
    elif kind == "agreement":
        details["agreement_text"] = form.get("agreement_text", "")
    elif kind == "worksheet":
        lines = (form.get("questions") or "").splitlines()
        questions = [line.strip() for line in lines if line.strip()]
        if questions:  # none: one free-text answer
            details["questions"] = questions
    elif kind == "package":
        lines = (form.get("includes") or "").splitlines()
        details["includes"] = [line.strip() for line in lines if line.strip()]
    details = {k: v for k, v in details.items() if v is not None}

    billing_type = form.get("billing_type") or "one_time"
    billing: dict[str, Any] = {"type": billing_type}
    if billing_type in ("recurring", "payment_plan"):
        billing["interval"] = form.get("interval") or "month"
        billing["interval_count"] = _int(form, "interval_count", errors) or 1
    if billing_type == "payment_plan":
        billing["installments"] = _int(form, "installments", errors)
    currency = (form.get("currency") or "USD").strip()
    price_minor: int | None = 0
    if billing_type != "free":
        price_minor = to_minor(form.get("price", ""), currency)
        if price_minor is None:
            errors["price"] = "Enter an amount such as 120 or 120.00."
    visibility = form.get("visibility") or "public"
    body = {
        "name": form.get("name", ""),
        "description": form.get("description", ""),
        "kind": kind,
        "details": details,
        "billing": billing,
        "price_minor": price_minor,
        "currency": currency,
        "visibility": visibility,
        "group_ids": _uuids(multi.get("group_ids", [])) if visibility == "groups" else [],
        "capacity": _int(form, "capacity", errors),
    }
    return body, errors


async def _editor(
    p: Pages,
    request: Request,
    page: CoachPage,
    offering: dict[str, Any] | None,
    *,
    status: int = 200,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
) -> Response:
    groups = await _groups(p, page)
    own_id = str(offering["id"]) if offering else None
    appointment_offerings = [
        Obj(o)
        for o in await _offerings(p, page)
        if o.get("kind") == "appointment"
        and o.get("status") != "archived"
        and str(o["id"]) != own_id
    ]
    versions: list[Obj] = []
    if offering is not None:
        reply = await call_catalog(
            p, "GET", f"{page.base}/offerings/{offering['id']}/versions", token=page.token
        )
        versions = [Obj(v) for v in body_of(reply).get("items", [])]
        versions.sort(key=lambda v: -int(v["version"]))
    if form is None:
        form = _offering_form(offering) if offering else dict(NEW_OFFERING)
    link = shop_link(p, page, f"/offerings/{offering['id']}") if offering else None
    snippets = embed_snippets(p, link, offering["name"]) if link and offering else None
    return await p.render(
        request,
        "catalog_offering_form.html",
        status=status,
        business=page.business,
        offering=Obj(offering) if offering else None,
        versions=versions,
        groups=groups,
        appointment_offerings=appointment_offerings,
        form=form,
        errors=errors or {},
        error=error,
        snippets=snippets,
    )


async def _get_offering(p: Pages, page: CoachPage, offering_id: uuid.UUID) -> dict[str, Any] | None:
    reply = await call_catalog(p, "GET", f"{page.base}/offerings/{offering_id}", token=page.token)
    if reply.status in (404, 422):
        return None
    result: dict[str, Any] = body_of(reply)
    return result


@router.get("/businesses/{business_id}/offerings/new")
async def new_offering(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    return await _editor(p, request, page, None)


@router.post("/businesses/{business_id}/offerings")
async def create_offering(request: Request, business_id: uuid.UUID, p: P) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, multi = posted
    values = _form_values(form, multi)
    body, local = offering_body(form, multi)
    if local:
        return await _editor(p, request, page, None, status=422, form=values, errors=local)
    reply = await call_catalog(
        p, "POST", f"{page.base}/offerings", token=page.token, json_body=body
    )
    if reply.ok:
        return p.redirect(f"{page.base}/offerings/{reply.body['id']}", notice="offering_saved")
    if reply.status >= 500:
        body_of(reply)
    errors, general = _errors(reply, OFFERING_FIELDS)
    return await _editor(
        p, request, page, None, status=reply.status, form=values, errors=errors, error=general
    )


@router.get("/businesses/{business_id}/offerings/{offering_id}")
async def offering_editor(
    request: Request, business_id: uuid.UUID, offering_id: uuid.UUID, p: P
) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    offering = await _get_offering(p, page, offering_id)
    if offering is None:
        return await _not_found(p, request, "offering")
    return await _editor(p, request, page, offering)


@router.post("/businesses/{business_id}/offerings/{offering_id}")
async def update_offering(
    request: Request, business_id: uuid.UUID, offering_id: uuid.UUID, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, multi = posted
    offering = await _get_offering(p, page, offering_id)
    if offering is None:
        return await _not_found(p, request, "offering")
    values = _form_values(form, multi)
    body, local = offering_body(form, multi)
    if local:
        return await _editor(p, request, page, offering, status=422, form=values, errors=local)
    reply = await call_catalog(
        p, "PATCH", f"{page.base}/offerings/{offering_id}", token=page.token, json_body=body
    )
    if reply.ok:
        notice = "offering_new_version" if offering["status"] == "published" else "offering_saved"
        return p.redirect(f"{page.base}/offerings/{offering_id}", notice=notice)
    if reply.status == 404:
        return await _not_found(p, request, "offering")
    if reply.status >= 500:
        body_of(reply)
    errors, general = _errors(reply, OFFERING_FIELDS)
    return await _editor(
        p, request, page, offering, status=reply.status, form=values, errors=errors, error=general
    )


@router.post("/businesses/{business_id}/offerings/{offering_id}/{action}")
async def offering_action(
    request: Request, business_id: uuid.UUID, offering_id: uuid.UUID, action: str, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, _, _ = posted
    if action not in ("publish", "archive"):
        return await _not_found(p, request, "page")
    reply = await call_catalog(
        p, "POST", f"{page.base}/offerings/{offering_id}/{action}", token=page.token
    )
    if reply.status == 404:
        return await _not_found(p, request, "offering")
    if reply.ok:
        notice = "offering_published" if action == "publish" else "offering_archived"
    else:
        notice = "offering_unchanged"
    return p.redirect(f"{page.base}/offerings/{offering_id}", notice=notice)


@router.get("/businesses/{business_id}/offerings/{offering_id}/preview")
async def offering_preview(
    request: Request, business_id: uuid.UUID, offering_id: uuid.UUID, p: P
) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    offering = await _get_offering(p, page, offering_id)
    if offering is None:
        return await _not_found(p, request, "offering")
    return await p.render(
        request,
        "storefront_offering.html",
        **storefront_context(dict(page.business), preview=page.base),
        back_href=f"{page.base}/offerings/{offering_id}",
        offering=offering_card(offering),
        can_buy=True,
    )


@router.get("/businesses/{business_id}/offering-versions/{version_id}")
async def offering_version(
    request: Request, business_id: uuid.UUID, version_id: uuid.UUID, p: P
) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    reply = await call_catalog(
        p, "GET", f"{page.base}/offering-versions/{version_id}", token=page.token
    )
    if reply.status in (404, 422):
        return await _not_found(p, request, "version")
    version = body_of(reply)
    return await p.render(
        request,
        "catalog_offering_version.html",
        business=page.business,
        version=Obj(version),
        card=offering_card({**version, "id": version["offering_id"]}),
    )


# -- collections ----------------------------------------------------------------------------------

COLLECTION_FIELDS = {"name", "description", "offering_ids", "in_app", "established_only"}


@router.get("/businesses/{business_id}/collections")
async def collections_list(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    reply = await call_catalog(p, "GET", f"{page.base}/collections", token=page.token)
    return await p.render(
        request,
        "catalog_collections.html",
        business=page.business,
        collections=[Obj(c) for c in body_of(reply).get("items", [])],
    )


def _ordered_choices(
    offerings: list[dict[str, Any]], chosen: list[str]
) -> list[tuple[Obj, int | None]]:
    """Every offering for the picker: the chosen ones first, in their order."""
    by_id = {
        str(o["id"]): o
        for o in offerings
        if o.get("status") != "archived" or str(o["id"]) in chosen
    }
    rows: list[tuple[Obj, int | None]] = [
        (Obj(by_id[oid]), n) for n, oid in enumerate(chosen, 1) if oid in by_id
    ]
    rows += [(Obj(o), None) for oid, o in by_id.items() if oid not in chosen]
    return rows


def collection_body(form: dict[str, str], multi: dict[str, list[str]]) -> dict[str, Any]:
    chosen = _uuids(multi.get("offering_ids", []))

    def position(item: tuple[int, str]) -> tuple[float, int]:
        index, oid = item
        try:
            return float(form.get(f"position-{oid}") or "inf"), index
        except ValueError:
            return float("inf"), index

    ordered = [oid for _, oid in sorted(enumerate(chosen), key=position)]
    return {
        "name": form.get("name", ""),
        "description": form.get("description", ""),
        "offering_ids": ordered,
        "in_app": form.get("in_app") == "on",
        "established_only": form.get("established_only") == "on",
    }


async def _collection_editor(
    p: Pages,
    request: Request,
    page: CoachPage,
    collection: dict[str, Any] | None,
    *,
    status: int = 200,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
) -> Response:
    offerings = await _offerings(p, page)
    if form is None:
        source = collection or {"name": "", "description": "", "offering_ids": []}
        form = {
            "name": source["name"],
            "description": source["description"],
            "offering_ids": [str(o) for o in source["offering_ids"]],
            "in_app": bool(source.get("in_app")),
            "established_only": bool(source.get("established_only")),
        }
    link = shop_link(p, page, f"/collections/{collection['id']}") if collection else None
    snippets = embed_snippets(p, link, collection["name"]) if link and collection else None
    return await p.render(
        request,
        "catalog_collection_form.html",
        status=status,
        business=page.business,
        collection=Obj(collection) if collection else None,
        choices=_ordered_choices(offerings, form["offering_ids"]),
        form=form,
        errors=errors or {},
        error=error,
        snippets=snippets,
    )


def _collection_values(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "offering_ids": list(body["offering_ids"])}


async def _get_collection(
    p: Pages, page: CoachPage, collection_id: uuid.UUID
) -> dict[str, Any] | None:
    reply = await call_catalog(
        p, "GET", f"{page.base}/collections/{collection_id}", token=page.token
    )
    if reply.status in (404, 422):
        return None
    result: dict[str, Any] = body_of(reply)
    return result


@router.get("/businesses/{business_id}/collections/new")
async def new_collection(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    return await _collection_editor(p, request, page, None)


@router.post("/businesses/{business_id}/collections")
async def create_collection(request: Request, business_id: uuid.UUID, p: P) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, multi = posted
    body = collection_body(form, multi)
    reply = await call_catalog(
        p, "POST", f"{page.base}/collections", token=page.token, json_body=body
    )
    if reply.ok:
        return p.redirect(f"{page.base}/collections/{reply.body['id']}", notice="collection_saved")
    if reply.status >= 500:
        body_of(reply)
    errors, general = _errors(reply, COLLECTION_FIELDS)
    return await _collection_editor(
        p,
        request,
        page,
        None,
        status=reply.status,
        form=_collection_values(body),
        errors=errors,
        error=general,
    )


@router.get("/businesses/{business_id}/collections/{collection_id}")
async def collection_editor(
    request: Request, business_id: uuid.UUID, collection_id: uuid.UUID, p: P
) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    collection = await _get_collection(p, page, collection_id)
    if collection is None:
        return await _not_found(p, request, "collection")
    return await _collection_editor(p, request, page, collection)


@router.post("/businesses/{business_id}/collections/{collection_id}")
async def update_collection(
    request: Request, business_id: uuid.UUID, collection_id: uuid.UUID, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, multi = posted
    body = collection_body(form, multi)
    reply = await call_catalog(
        p, "PATCH", f"{page.base}/collections/{collection_id}", token=page.token, json_body=body
    )
    if reply.ok:
        return p.redirect(f"{page.base}/collections/{collection_id}", notice="collection_saved")
    if reply.status == 404:
        return await _not_found(p, request, "collection")
    if reply.status >= 500:
        body_of(reply)
    collection = await _get_collection(p, page, collection_id)
    errors, general = _errors(reply, COLLECTION_FIELDS)
    return await _collection_editor(
        p,
        request,
        page,
        collection,
        status=reply.status,
        form=_collection_values(body),
        errors=errors,
        error=general,
    )


@router.post("/businesses/{business_id}/collections/{collection_id}/delete")
async def delete_collection(
    request: Request, business_id: uuid.UUID, collection_id: uuid.UUID, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, _, _ = posted
    reply = await call_catalog(
        p, "DELETE", f"{page.base}/collections/{collection_id}", token=page.token
    )
    if reply.status == 404:
        return await _not_found(p, request, "collection")
    body_of(reply)
    return p.redirect(f"{page.base}/collections", notice="collection_deleted")


@router.get("/businesses/{business_id}/collections/{collection_id}/preview")
async def collection_preview(
    request: Request, business_id: uuid.UUID, collection_id: uuid.UUID, p: P
) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    collection = await _get_collection(p, page, collection_id)
    if collection is None:
        return await _not_found(p, request, "collection")
    by_id = {str(o["id"]): o for o in await _offerings(p, page)}
    # Visitors see published offerings only (and only those they are eligible for).
    shown = [
        offering_card(by_id[str(oid)])
        for oid in collection["offering_ids"]
        if str(oid) in by_id and by_id[str(oid)].get("status") == "published"
    ]
    return await p.render(
        request,
        "storefront_collection.html",
        **storefront_context(dict(page.business), preview=page.base),
        back_href=f"{page.base}/collections/{collection_id}",
        collection=Obj(collection),
        offerings=shown,
        hidden_count=len(collection["offering_ids"]) - len(shown),
    )


# -- discount codes -------------------------------------------------------------------------------

DISCOUNT_FIELDS = {
    "code",
    "amount",
    "currency",
    "expires_at",
    "max_redemptions",
    "max_per_client",
    "offering_ids",
}


def discount_body(
    form: dict[str, str], multi: dict[str, list[str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    body: dict[str, Any] = {"code": (form.get("code") or "").strip()}
    kind = form.get("discount_kind") or "percent"
    if kind == "percent":
        body["percent_off"] = _int(form, "amount", errors)
        if body["percent_off"] is None and "amount" not in errors:
            errors["amount"] = "Enter a percentage from 1 to 100."
    else:
        currency = (form.get("currency") or "USD").strip()
        minor = to_minor(form.get("amount", ""), currency)
        if minor is None:
            errors["amount"] = "Enter an amount such as 10 or 10.00."
        body["amount_off_minor"] = minor
        body["currency"] = currency
    expires = (form.get("expires_at") or "").strip()
    if expires:
        body["expires_at"] = expires if "T" in expires else f"{expires}T23:59:59Z"
    for name in ("max_redemptions", "max_per_client"):
        value = _int(form, name, errors)
        if value is not None:
            body[name] = value
    body["offering_ids"] = _uuids(multi.get("offering_ids", []))
    return body, errors


async def _discounts_page(
    p: Pages, request: Request, page: CoachPage, *, status: int = 200, **context: Any
) -> Response:
    reply = await call_catalog(p, "GET", f"{page.base}/discount-codes", token=page.token)
    offerings = await _offerings(p, page)
    names = {str(o["id"]): o["name"] for o in offerings}
    codes = []
    for code in body_of(reply).get("items", []):
        applies = [names.get(str(o), "a removed offering") for o in code.get("offering_ids") or []]
        codes.append(Obj(code, amount_label=code["label"], applies_to=applies))
    context.setdefault("form", {"discount_kind": "percent", "currency": "USD"})
    return await p.render(
        request,
        "catalog_discounts.html",
        status=status,
        business=page.business,
        codes=codes,
        offerings=[Obj(o) for o in offerings if o.get("status") != "archived"],
        **context,
    )


@router.get("/businesses/{business_id}/discount-codes")
async def discounts_list(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    return await _discounts_page(p, request, page)


@router.post("/businesses/{business_id}/discount-codes")
async def create_discount(request: Request, business_id: uuid.UUID, p: P) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, multi = posted
    values = {**form, "offering_ids": multi.get("offering_ids", [])}
    body, local = discount_body(form, multi)
    if local:
        return await _discounts_page(p, request, page, status=422, form=values, errors=local)
    reply = await call_catalog(
        p, "POST", f"{page.base}/discount-codes", token=page.token, json_body=body
    )
    if reply.ok:
        return p.redirect(f"{page.base}/discount-codes", notice="discount_created")
    if reply.status >= 500:
        body_of(reply)
    errors, general = _errors(reply, DISCOUNT_FIELDS)
    if reply.status == 409 and "code" not in errors:
        errors["code"] = reply.detail or "This code already exists."
        general = None
    return await _discounts_page(
        p, request, page, status=reply.status, form=values, errors=errors, error=general
    )


@router.post("/businesses/{business_id}/discount-codes/{code_id}/delete")
async def delete_discount(
    request: Request, business_id: uuid.UUID, code_id: uuid.UUID, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, _, _ = posted
    reply = await call_catalog(
        p, "DELETE", f"{page.base}/discount-codes/{code_id}", token=page.token
    )
    if reply.status == 404:
        return await _not_found(p, request, "discount code")
    body_of(reply)
    return p.redirect(f"{page.base}/discount-codes", notice="discount_deleted")
