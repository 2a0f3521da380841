"""Coach pages of sequences (notifications): the list, the builder and each run's steps.

The builder is one plain form: steps are added, removed and moved with submit buttons
(``op`` = ``add``, ``remove:N``, ``up:N``, ``down:N``) that show the form again with the
change and save nothing; ``save`` sends the whole sequence to the notifications API,
whose field errors come back next to the fields. A little script (``data-show-when``)
hides the fields of other actions; without it every field shows. The offerings come
from the catalog's coach API, the groups from the catalog's read model of them.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.pages.coach import CoachPage, coach_form, coach_page
from gateway.pages.common import Obj, P, body_of, call_catalog, call_notifications
from gateway.pages.rendering import Pages
from gateway.upstream import Reply

router = APIRouter(include_in_schema=False)

ACTIONS = (
    ("email", "Send an email"),
    ("assign_worksheet", "Assign a worksheet"),
    ("request_agreement", "Request an agreement signature"),
    ("add_to_group", "Add to a client group"),
)
DELAY_FROM = (("previous", "after the previous step"), ("start", "after the purchase"))
UNITS = (("minutes", 1), ("hours", 60), ("days", 1440))
STEP_FIELDS = (
    "id",
    "action",
    "delay",
    "delay_unit",
    "delay_from",
    "email_subject",
    "email_body_markdown",
    "worksheet_offering_id",
    "agreement_offering_id",
    "group_id",
)
MAX_STEPS = 50
NEW_STEP = {
    "id": "",
    "action": "email",
    "delay": "0",
    "delay_unit": "minutes",
    "delay_from": "previous",
    "email_subject": "",
    "email_body_markdown": "",
    "worksheet_offering_id": "",
    "agreement_offering_id": "",
    "group_id": "",
}


# -- form <-> API ------------------------------------------------------------------------


def _step_form(step: dict[str, Any]) -> dict[str, str]:
    minutes = int(step.get("delay_minutes") or 0)
    unit, size = "minutes", 1
    for name, factor in reversed(UNITS):
        if minutes and minutes % factor == 0:
            unit, size = name, factor
            break
    return {
        **NEW_STEP,
        "id": str(step.get("id") or ""),
        "action": str(step.get("action") or "email"),
        "delay": str(minutes // size),
        "delay_unit": unit,
        "delay_from": str(step.get("delay_from") or "previous"),
        "email_subject": step.get("email_subject") or "",
        "email_body_markdown": step.get("email_body_markdown") or "",
        "worksheet_offering_id": str(step.get("worksheet_offering_id") or ""),
        "agreement_offering_id": str(step.get("agreement_offering_id") or ""),
        "group_id": str(step.get("group_id") or ""),
    }


def sequence_form(sequence: dict[str, Any] | None) -> dict[str, Any]:
    """A sequence (or a new one) as the builder's values."""
    if sequence is None:
        return {
            "name": "",
            "offering_id": "",
            "stop_on_refund": True,
            "stop_on_subscription_end": True,
            "steps": [dict(NEW_STEP)],
        }
    return {
        "name": sequence.get("name", ""),
        "offering_id": str(sequence.get("offering_id") or ""),
        "stop_on_refund": bool(sequence.get("stop_on_refund")),
        "stop_on_subscription_end": bool(sequence.get("stop_on_subscription_end")),
        "steps": [_step_form(s) for s in sequence.get("steps", [])],
    }


def posted_form(form: dict[str, str]) -> dict[str, Any]:
    """The builder's values as posted (steps ``step-N-field``, N from 0)."""
    try:
        count = max(0, min(int(form.get("step_count", "0")), MAX_STEPS))
    except ValueError:
        count = 0
    steps = [
        {name: form.get(f"step-{n}-{name}", NEW_STEP[name]) for name in STEP_FIELDS}
        for n in range(count)
    ]
    return {
        "name": form.get("name", ""),
        "offering_id": form.get("offering_id", ""),
        "stop_on_refund": form.get("stop_on_refund") == "on",
        "stop_on_subscription_end": form.get("stop_on_subscription_end") == "on",
        "steps": steps,
    }


def apply_op(values: dict[str, Any], op: str) -> bool:
    """Change the steps as a builder button asks. False for ``save`` (or anything else)."""
    steps: list[dict[str, str]] = values["steps"]
    name, _, raw = op.partition(":")
    if name == "add":
        if len(steps) < MAX_STEPS:
            steps.append(dict(NEW_STEP))
        return True
    try:
        index = int(raw)
    except ValueError:
        return False
    if not 0 <= index < len(steps):
        return name in ("remove", "up", "down")
    if name == "remove":
        steps.pop(index)
    elif name == "up" and index > 0:
        steps[index - 1], steps[index] = steps[index], steps[index - 1]
    elif name == "down" and index < len(steps) - 1:
        steps[index + 1], steps[index] = steps[index], steps[index + 1]
    else:
        return name in ("up", "down")
    return True


def _uuid_or_none(value: str) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


def api_body(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The API's SequenceIn from the builder's values, and what could not even be read."""
    errors: dict[str, str] = {}
    steps = []
    factors = dict(UNITS)
    for n, step in enumerate(values["steps"]):
        action = step["action"]
        try:
            delay = int(step["delay"] or "0")
        except ValueError:
            errors[f"step-{n}-delay"] = "Enter a whole number."
            delay = 0
        body: dict[str, Any] = {
            "delay_minutes": delay * factors.get(step["delay_unit"], 1),
            "delay_from": "start" if step["delay_from"] == "start" else "previous",
            "action": action,
        }
        if _uuid_or_none(step["id"]):
            body["id"] = step["id"]
        if action == "email":
            body["email_subject"] = step["email_subject"]
            body["email_body_markdown"] = step["email_body_markdown"]
        else:
            target = {
                "assign_worksheet": "worksheet_offering_id",
                "request_agreement": "agreement_offering_id",
                "add_to_group": "group_id",
            }.get(action)
            if target is not None:
                chosen = _uuid_or_none(step[target])
                if chosen is None:
                    errors[f"step-{n}-{target}"] = "Choose one."
                body[target] = chosen
        steps.append(body)
    return {
        "name": values["name"],
        "offering_id": _uuid_or_none(values["offering_id"]),
        "stop_on_refund": values["stop_on_refund"],
        "stop_on_subscription_end": values["stop_on_subscription_end"],
        "steps": steps,
    }, errors


def api_errors(reply: Reply) -> tuple[dict[str, str], str | None]:
    """The API's field errors as builder fields (``steps.N.field`` -> ``step-N-field``)."""
    placed: dict[str, str] = {}
    rest: list[str] = []
    body = reply.body if isinstance(reply.body, dict) else {}
    for error in body.get("errors") or []:
        if not isinstance(error, dict):
            continue
        path = str(error.get("field", "")).split(".")
        message = str(error.get("message", "is invalid")).removeprefix("Value error, ")
        if path[0] == "steps" and len(path) >= 2 and path[1].isdigit():
            key = f"step-{path[1]}-{path[2]}" if len(path) > 2 else f"step-{path[1]}"
            if len(path) > 2 and path[2] == "delay_minutes":
                key = f"step-{path[1]}-delay"
            placed.setdefault(key, message)
        elif path[0] in ("name", "offering_id"):
            placed.setdefault(path[0], message)
        else:
            rest.append(message if path == [""] else f"{'.'.join(path)}: {message}")
    general = "; ".join(rest) or None
    if not placed and general is None and not reply.ok:
        general = reply.detail or "The sequence could not be saved. Please check the form."
    return placed, general


# -- pages ---------------------------------------------------------------------------------


async def _not_found(p: Pages, request: Request) -> Response:
    return await p.render(
        request,
        "error.html",
        status=404,
        title="Not found",
        message="There is no such sequence in this business.",
    )


async def _offerings(p: Pages, page: CoachPage) -> list[dict[str, Any]]:
    reply = await call_catalog(p, "GET", f"{page.base}/offerings", token=page.token)
    items: list[dict[str, Any]] = body_of(reply).get("items", [])
    return items


async def _groups(p: Pages, page: CoachPage) -> list[dict[str, Any]]:
    reply = await call_catalog(p, "GET", f"{page.base}/groups", token=page.token)
    items: list[dict[str, Any]] = body_of(reply).get("items", [])
    return items


async def _sequence(p: Pages, page: CoachPage, sequence_id: uuid.UUID) -> dict[str, Any] | None:
    reply = await call_notifications(
        p, "GET", f"{page.base}/sequences/{sequence_id}", token=page.token
    )
    if reply.status in (404, 422):
        return None
    result: dict[str, Any] = body_of(reply)
    return result


async def _builder(
    p: Pages,
    request: Request,
    page: CoachPage,
    sequence: dict[str, Any] | None,
    values: dict[str, Any],
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    focus: str | None = None,
) -> Response:
    offerings = await _offerings(p, page)
    groups = await _groups(p, page)
    live = [o for o in offerings if o.get("status") != "archived"]

    def published(kind: str) -> list[tuple[str, str]]:
        return [
            (str(o["id"]), str(o["name"]))
            for o in offerings
            if o.get("kind") == kind and o.get("status") == "published"
        ]

    return await p.render(
        request,
        "sequence_form.html",
        status=status,
        business=page.business,
        sequence=Obj(sequence) if sequence else None,
        form=values,
        errors=errors or {},
        error=error,
        focus=focus,
        offering_options=[
            ("", "Not linked yet"),
            *((str(o["id"]), f"{o['name']} ({o.get('status', '')})") for o in live),
        ],
        worksheet_options=[("", "Choose a worksheet"), *published("worksheet")],
        agreement_options=[("", "Choose an agreement"), *published("agreement")],
        group_options=[("", "Choose a group"), *((str(g["id"]), str(g["name"])) for g in groups)],
        actions=ACTIONS,
        delay_from=DELAY_FROM,
        units=[name for name, _ in UNITS],
        max_steps=MAX_STEPS,
    )


@router.get("/businesses/{business_id}/sequences")
async def sequences_list(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    reply = await call_notifications(p, "GET", f"{page.base}/sequences", token=page.token)
    items = body_of(reply).get("items", [])
    return await p.render(
        request,
        "sequences_list.html",
        business=page.business,
        sequences=[Obj(s, runs=Obj(s["runs"])) for s in items],
    )


@router.get("/businesses/{business_id}/sequences/new")
async def new_sequence(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    return await _builder(p, request, page, None, sequence_form(None))


@router.get("/businesses/{business_id}/sequences/{sequence_id}")
async def edit_sequence(
    request: Request, business_id: uuid.UUID, sequence_id: uuid.UUID, p: P
) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    sequence = await _sequence(p, page, sequence_id)
    if sequence is None:
        return await _not_found(p, request)
    return await _builder(p, request, page, sequence, sequence_form(sequence))


async def _save(
    p: Pages, request: Request, business_id: uuid.UUID, sequence_id: uuid.UUID | None
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, _ = posted
    sequence = None
    if sequence_id is not None:
        sequence = await _sequence(p, page, sequence_id)
        if sequence is None:
            return await _not_found(p, request)
    values = posted_form(form)
    op = form.get("op") or "save"
    if op != "save" and apply_op(values, op):
        # Only the form changes; the focus goes back near the button that was pressed.
        return await _builder(p, request, page, sequence, values, focus=op)
    body, local = api_body(values)
    if local:
        return await _builder(p, request, page, sequence, values, status=422, errors=local)
    if sequence_id is None:
        reply = await call_notifications(
            p, "POST", f"{page.base}/sequences", token=page.token, json_body=body
        )
    else:
        reply = await call_notifications(
            p, "PUT", f"{page.base}/sequences/{sequence_id}", token=page.token, json_body=body
        )
    if reply.ok:
        return p.redirect(f"{page.base}/sequences", notice="sequence_saved")
    if reply.status == 404:
        return await _not_found(p, request)
    if reply.status >= 500:
        body_of(reply)
    errors, general = api_errors(reply)
    return await _builder(
        p, request, page, sequence, values, status=reply.status, errors=errors, error=general
    )


@router.post("/businesses/{business_id}/sequences")
async def create_sequence(request: Request, business_id: uuid.UUID, p: P) -> Response:
    return await _save(p, request, business_id, None)


@router.post("/businesses/{business_id}/sequences/{sequence_id}")
async def update_sequence(
    request: Request, business_id: uuid.UUID, sequence_id: uuid.UUID, p: P
) -> Response:
    return await _save(p, request, business_id, sequence_id)


@router.post("/businesses/{business_id}/sequences/{sequence_id}/delete")
async def delete_sequence(
    request: Request, business_id: uuid.UUID, sequence_id: uuid.UUID, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, _, _ = posted
    reply = await call_notifications(
        p, "DELETE", f"{page.base}/sequences/{sequence_id}", token=page.token
    )
    if reply.status == 404:
        return await _not_found(p, request)
    if not reply.ok:
        body_of(reply)  # the "try again shortly" page
    return p.redirect(f"{page.base}/sequences", notice="sequence_deleted")


@router.get("/businesses/{business_id}/sequences/{sequence_id}/runs")
async def sequence_runs(
    request: Request, business_id: uuid.UUID, sequence_id: uuid.UUID, p: P
) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    sequence = await _sequence(p, page, sequence_id)
    if sequence is None:
        return await _not_found(p, request)
    try:
        offset = max(0, int(request.query_params.get("offset", "0")))
    except ValueError:
        offset = 0
    reply = await call_notifications(
        p,
        "GET",
        f"{page.base}/sequences/{sequence_id}/runs",
        token=page.token,
        params={"limit": "50", "offset": str(offset)},
    )
    listing = body_of(reply)
    runs = [Obj(r, steps=[Obj(s) for s in r["steps"]]) for r in listing["items"]]
    return await p.render(
        request,
        "sequence_runs.html",
        business=page.business,
        sequence=Obj(sequence),
        runs=runs,
        total=listing["total"],
        limit=listing["limit"],
        offset=listing["offset"],
    )
