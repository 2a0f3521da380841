"""The public storefront of a business: its packages page, an offering, a collection,
and the embed script for coaches' own websites (checkout: gateway.pages.checkout).

No account is needed: pages call the catalog's viewer API with the visitor's
token when there is one, and the catalog decides who may see what. With
``?embed=1`` a page renders without the site's chrome and may be framed by
any site (see ``gateway.security.frameable``); nothing else may be.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.types import Scope, Send

from gateway.pages.common import Obj, P, call_catalog
from gateway.pages.rendering import NOTICE_COOKIE, STATIC, Pages
from gateway.security import FRAMEABLE_MARKER, cookie_value
from gateway.sessions import ActiveSession
from gateway.state import GatewayState
from gateway.upstream import Reply, UpstreamUnavailable
from kit.logging import get_logger

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")


# -- shaping what the catalog returns for the templates ----------------------------------------


def offering_card(data: dict[str, Any]) -> Obj:
    """An OfferingCard (viewer API) or an OfferingOut (coach API) as the templates read it."""
    billing = data.get("billing") or {"type": "one_time"}
    return Obj(
        {
            "id": str(data["id"]),
            "name": data.get("name") or "",
            "description": data.get("description") or "",
            "kind": data.get("kind") or "",
            "billing": Obj(billing),
            "price_label": data["price_label"],
            "spots_left": data.get("spots_left"),
            "details": Obj(data.get("details") or {}),
        }
    )


def _embed(request: Request) -> bool:
    return request.query_params.get("embed") == "1"


def frameable(response: Response) -> Response:
    """Let any site frame this storefront response (the middleware does the rest)."""
    response.headers[FRAMEABLE_MARKER.decode()] = "1"
    return response


async def not_found(p: Pages, request: Request, message: str) -> Response:
    return await p.render(request, "error.html", status=404, title="Not found", message=message)


def _must(reply: Reply) -> Any:
    if reply.status >= 500 or reply.body is None:
        raise UpstreamUnavailable(f"catalog answered {reply.status}")
    return reply.body


def _reason(reply: Reply) -> str | None:
    return str(reply.body.get("reason")) if isinstance(reply.body, dict) else None


def _token(active: ActiveSession | None) -> str | None:
    return active.access_token if active else None


def _valid_slug(slug: str) -> bool:
    return bool(SLUG.match(slug))


def storefront_context(
    business: dict[str, Any], *, embed: bool = False, preview: str | None = None
) -> dict[str, Any]:
    """What every storefront template needs. ``preview``: the coach's base path, or None."""
    slug = business["slug"]
    return {
        "business": Obj(business),
        "shop_base": f"/b/{slug}",
        "embed": embed,
        "preview": preview,
    }


# -- embed script -------------------------------------------------------------------------------


@router.get("/embed.js")
async def embed_script() -> Response:
    response = FileResponse(STATIC / "embed.js", media_type="text/javascript; charset=utf-8")
    response.headers["Cache-Control"] = "public, max-age=3600"
    # Loaded by other sites' pages with <script src>: that is what it is for.
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


# -- packages page ------------------------------------------------------------------------------


async def _packages(p: Pages, slug: str, active: ActiveSession | None) -> Reply:
    """The catalog's packages reply. For an anonymous visitor it comes from the gateway's
    public cache when it can (the reply fetched without a token, the same for everyone);
    the page itself is rendered per request, so nothing per visitor is ever cached."""
    path = f"/public/businesses/{slug}/packages"
    cache = getattr(p.state, "public_cache", None)
    if active is not None or cache is None:
        return await call_catalog(p, "GET", path, token=_token(active))

    async def fetch() -> Reply | None:
        reply = await call_catalog(p, "GET", path)
        # Only a 200: a 404 (a business the catalog has not heard of yet) would not be
        # cleared by a catalog event once the business exists.
        return reply if reply.status == 200 else None

    reply: Reply | None = await cache.cached(f"page:packages:{slug}", fetch)
    return reply if reply is not None else await call_catalog(p, "GET", path)


@router.get("/b/{slug}")
async def packages_page(request: Request, slug: str, p: P) -> Response:
    if not _valid_slug(slug):
        return await not_found(p, request, "There is no such business.")
    embed = _embed(request)
    active = await p.viewer(request)
    cache = getattr(p.state, "public_cache", None)
    if active is None and cache is not None and not request.cookies.get(NOTICE_COOKIE):
        # The rendered page itself, not only the catalog's data: rendering costs far more
        # than the lookup, and an anonymous page holds nothing per visitor. Hits are
        # answered before the web app (answer_from_cache); this fills the cache.
        key = packages_page_key(slug, embed)
        html = await cache.get(key)
        outcome = "hit"
        if html is None:
            outcome = "miss" if cache.active else "bypass"
            reply = await _packages(p, slug, None)
            if reply.status == 200:
                page = p.render_for_anyone(request, PACKAGES, **_packages_context(reply, embed))
                html = page.encode()
                if len(html) <= p.settings.public_cache_max_entry_bytes:
                    await cache.set(key, html)
        if html is not None:
            response = HTMLResponse(html, headers={"Cache-Control": "no-cache", "X-Cache": outcome})
            return frameable(response) if embed else response
    reply = await _packages(p, slug, active)
    if reply.status == 404:
        return await not_found(p, request, "There is no such business.")
    response = await p.render(request, PACKAGES, **_packages_context(reply, embed))
    return frameable(response) if embed else response


PACKAGES = "storefront_packages.html"
_PACKAGES_PATH = re.compile(r"^/b/([a-z0-9-]{1,80})$")


def packages_page_key(slug: str, embed: bool) -> str:
    return f"html:packages:{slug}:{int(embed)}"


async def answer_from_cache(state: GatewayState, scope: Scope, send: Send) -> bool:
    """Send an anonymous visitor's packages page straight from the public cache.

    Skips the web app entirely (routing, dependencies, templates): at 50
    connections that took the page from ~30% to the JSON's ~95% of a bare
    hello-world. Anyone with a session or a notice cookie, and every miss, goes
    on to :func:`packages_page`, which renders and fills the cache.
    """
    match = _PACKAGES_PATH.match(scope["path"])
    if scope["method"] != "GET" or match is None or not _valid_slug(match.group(1)):
        return False
    cookies = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"cookie"), "")
    if cookies and (
        cookie_value(cookies, state.settings.session_cookie) or cookie_value(cookies, NOTICE_COOKIE)
    ):
        return False
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    embed = query.get("embed") == "1"
    html = state.public_cache.lookup(packages_page_key(match.group(1), embed))
    if html is None:
        return False
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(html)).encode()),
        (b"cache-control", b"no-cache"),
        (b"x-cache", b"hit"),
    ]
    if embed:
        headers.append((FRAMEABLE_MARKER, b"1"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": html})
    return True


def _packages_context(reply: Reply, embed: bool) -> dict[str, Any]:
    data = _must(reply)
    return {
        **storefront_context(data["business"], embed=embed),
        "offerings": [offering_card(o) for o in data.get("offerings", [])],
    }


# -- one offering ---------------------------------------------------------------------


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


@router.get("/b/{slug}/offerings/{offering_id}")
async def offering_page(request: Request, slug: str, offering_id: uuid.UUID, p: P) -> Response:
    found = await _offering(p, request, slug, offering_id)
    if isinstance(found, Response):
        return found
    data, _ = found
    embed = _embed(request)
    response = await p.render(
        request,
        "storefront_offering.html",
        **storefront_context(data["business"], embed=embed),
        offering=offering_card(data["offering"]),
        can_buy=bool(data.get("can_buy", True)),
    )
    return frameable(response) if embed else response


# -- collection ---------------------------------------------------------------------------------


@router.get("/b/{slug}/collections/{collection_id}")
async def collection_page(request: Request, slug: str, collection_id: uuid.UUID, p: P) -> Response:
    if not _valid_slug(slug):
        return await not_found(p, request, "There is no such business.")
    embed = _embed(request)
    active = await p.viewer(request)
    reply = await call_catalog(
        p, "GET", f"/public/businesses/{slug}/collections/{collection_id}", token=_token(active)
    )
    path = request.url.path
    if reply.status == 401 and active is None:
        if embed:  # the login page may not be framed: offer it in a new tab
            response = await p.render(
                request,
                "storefront_login_needed.html",
                status=401,
                embed=True,
                login_url=f"/login?next={quote(path)}",
            )
            return frameable(response)
        return p.redirect(f"/login?next={quote(path)}", notice="login_required")
    if reply.status in (401, 403):  # 401 with a session: its token was refused, no loop
        response = await p.render(
            request,
            "error.html",
            status=403,
            title="For established clients",
            message="This page is for established clients of this business only.",
            embed=embed,
        )
        return frameable(response) if embed else response
    if reply.status == 404:
        return await not_found(p, request, "This collection does not exist.")
    data = _must(reply)
    response = await p.render(
        request,
        "storefront_collection.html",
        **storefront_context(data["business"], embed=embed),
        collection=Obj(data["collection"]),
        offerings=[offering_card(o) for o in data.get("offerings", [])],
    )
    return frameable(response) if embed else response
