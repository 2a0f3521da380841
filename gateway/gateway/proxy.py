"""The API hop: ``/api/v1/<service>/...`` to that service, as a bare ASGI app.

This is the hot path, so it skips the framework's routing: parse, check,
forward over the shared aiohttp pool, answer. On the way it verifies any
bearer token (services verify again), turns the session cookie into a
bearer token, enforces CSRF on cookie-authenticated writes, applies rate
limits, strips headers a client must not set, and sets the forwarding ones.

Anonymous GETs of allow-listed public catalog reads may be answered from the
gateway's :class:`~gateway.cache.PublicCache` (see gateway.cache for why that
stays correct); those answers carry ``X-Cache: hit|miss|bypass``.
"""

from __future__ import annotations

import json

import aiohttp
from starlette.types import Receive, Scope, Send

from gateway.cache import CachedResponse, cacheable_api_path, storable_response
from gateway.security import (
    HOP_BY_HOP,
    INTERNAL_HEADER_PREFIXES,
    client_address,
    cookie_value,
    csrf_matches,
    origin_allowed,
)
from gateway.state import GatewayState
from gateway.upstream import UpstreamUnavailable
from kit.errors import Forbidden, NotFound, ServiceError, Unauthorized, problem_response
from kit.logging import current_ids, get_logger
from kit.metrics import ROUTE_LABEL_SCOPE_KEY

log = get_logger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RATE_LIMITED = {
    ("POST", "/api/v1/clients/signup"): "signup",
    ("POST", "/api/v1/clients/sessions"): "login",
    ("POST", "/api/v1/clients/magic-links"): "magic_link",
    ("POST", "/api/v1/clients/magic-links/consume"): "login",
    ("POST", "/api/v1/clients/password-resets"): "password_reset",
    ("POST", "/api/v1/clients/password-resets/consume"): "password_reset",
    ("POST", "/api/v1/payments/orders"): "checkout",
}
STRIPE_WEBHOOK_PATH = "/webhooks/stripe"
STRIPE_WEBHOOK_UPSTREAM = "/api/v1/payments/webhooks/stripe"
# The only request headers a webhook carries on: what the signature check needs.
_WEBHOOK_HEADERS = frozenset({b"content-type", b"stripe-signature", b"user-agent"})
# Upstream response headers the gateway sets itself.
_REPLACED_IN_RESPONSE = HOP_BY_HOP | {b"server", b"date", b"x-request-id"}


class PayloadTooLarge(ServiceError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class MethodNotAllowed(ServiceError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class BadGateway(ServiceError):
    status, slug, title = 502, "bad-gateway", "Service unavailable"


class GatewayTimeout(ServiceError):
    status, slug, title = 504, "gateway-timeout", "Service took too long"


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body may be at most {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class ApiProxy:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        # The metrics route label of a proxied request: its upstream service, never the
        # raw path (bounded; an unknown service stays kit's "<unmatched>").
        self._route_labels = {name: f"proxy:{name}" for name in state.upstreams.replicas}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            try:
                await self._forward(scope, receive, send)
            except UpstreamUnavailable as exc:
                raise BadGateway("A service needed for this request is unavailable.") from exc
        except ServiceError as exc:
            response = problem_response(
                exc.status, exc.slug, exc.title, exc.detail, errors=exc.errors, headers=exc.headers
            )
            await response(scope, receive, send)

    async def stripe_webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /webhooks/stripe``: Stripe's events, to payments, byte for byte.

        The signature covers the raw body, so nothing here parses or re-encodes
        it. No session, no CSRF, no token: the signature is the authority, and
        payments checks it (an empty secret refuses everything).
        """
        scope[ROUTE_LABEL_SCOPE_KEY] = STRIPE_WEBHOOK_PATH
        try:
            try:
                await self._forward_webhook(scope, receive, send)
            except UpstreamUnavailable as exc:
                raise BadGateway("The payments service is unavailable.") from exc
        except ServiceError as exc:
            response = problem_response(
                exc.status, exc.slug, exc.title, exc.detail, errors=exc.errors, headers=exc.headers
            )
            await response(scope, receive, send)

    async def _forward_webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.state.settings
        if scope["method"] != "POST":
            raise MethodNotAllowed("Stripe webhooks are POSTs.", headers={"Allow": "POST"})
        outgoing: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.lower()
            if name in _WEBHOOK_HEADERS:
                outgoing[name.decode("latin-1")] = raw_value.decode("latin-1")
        body = await read_body(receive, settings.webhook_max_body_bytes)
        ids = current_ids()
        if request_id := ids.get("request_id"):
            outgoing["x-request-id"] = request_id
        if correlation_id := ids.get("correlation_id"):
            outgoing["x-correlation-id"] = correlation_id
        outgoing["x-forwarded-for"] = client_address(scope, settings.trusted_proxy_count)
        outgoing["x-forwarded-proto"] = scope.get("scheme", "http")
        try:
            async with self.state.upstreams.request(
                "payments",
                "POST",
                STRIPE_WEBHOOK_UPSTREAM,
                headers=outgoing,
                data=body,
                allow_redirects=False,
            ) as upstream:
                payload = await upstream.read()
                content_type = upstream.headers.get("content-type", "application/json")
                status = upstream.status
        except TimeoutError as exc:
            log.warning("upstream_timeout", service="payments")
            raise GatewayTimeout("The payments service did not answer in time.") from exc
        except aiohttp.ClientError as exc:
            log.warning("upstream_unavailable", service="payments", error=str(exc))
            raise BadGateway("The payments service is unavailable.") from exc
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        settings = state.settings
        path: str = scope["path"]
        service = path.split("/", 4)[3] if path.count("/") >= 3 else ""
        if service not in state.upstreams.replicas or not path.startswith("/api/v1/"):
            raise NotFound("No such API.")
        scope[ROUTE_LABEL_SCOPE_KEY] = self._route_labels[service]
        method: str = scope["method"]
        public_read = method == "GET" and cacheable_api_path(path)

        outgoing: dict[str, str] = {}
        authorization = cookie_header = origin = csrf_header = content_type = None
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.lower()
            if name == b"authorization":
                authorization = raw_value.decode("latin-1")
            elif name == b"cookie":
                cookie_header = raw_value.decode("latin-1")
            elif name in HOP_BY_HOP or name.startswith(INTERNAL_HEADER_PREFIXES):
                continue
            else:
                value = raw_value.decode("latin-1")
                if name == b"origin":
                    origin = value
                elif name == b"x-csrf-token":
                    csrf_header = value
                    continue
                elif name == b"content-type":
                    content_type = value
                outgoing[name.decode("latin-1")] = value

        if authorization is not None:
            token = authorization.partition(" ")[2].strip()
            if not authorization.lower().startswith("bearer ") or not token:
                raise Unauthorized("Use 'Authorization: Bearer <token>'.")
            await state.verifier.verify(token)  # refused here already, verified again upstream
            outgoing["authorization"] = f"Bearer {token}"
        elif cookie_header is not None:
            session_token = cookie_value(cookie_header, settings.session_cookie)
            active = await state.sessions.resolve(session_token) if session_token else None
            if active is not None:
                if method in UNSAFE_METHODS:
                    csrf_cookie = cookie_value(cookie_header, settings.csrf_cookie)
                    if not csrf_matches(csrf_cookie, csrf_header) or not origin_allowed(
                        origin, settings.public_base_url
                    ):
                        raise Forbidden("Missing or wrong CSRF token (send X-CSRF-Token).")
                outgoing["authorization"] = f"Bearer {active.access_token}"

        body = await read_body(receive, settings.max_body_bytes)

        # The public cache: only for a visitor who sent no token and no session
        # cookie at all (anything else always goes to the service).
        cache_key: str | None = None
        cache_ticket: int | None = None
        x_cache = b""
        if public_read:
            anonymous = authorization is None and not (
                cookie_header and cookie_value(cookie_header, settings.session_cookie)
            )
            cache = state.public_cache
            if anonymous and not body and cache.active:
                query_string: bytes = scope.get("query_string", b"")
                cache_key = f"api:{path}?{query_string.decode('latin-1')}"
                cached: CachedResponse | None = cache.lookup(cache_key)
                if cached is not None:
                    await _send_cached(send, cached)
                    return
                cache_ticket = cache.ticket()
                x_cache = b"miss"
            else:
                x_cache = b"bypass"

        ip = client_address(scope, settings.trusted_proxy_count)
        bucket = RATE_LIMITED.get((method, path))
        if bucket is not None:
            await state.rate_limits.hit(bucket, ip, _email_in(body, content_type))

        ids = current_ids()
        if request_id := ids.get("request_id"):
            outgoing["x-request-id"] = request_id
        # The sanitised id the gateway logs under (a client's raw header never passes).
        if correlation_id := ids.get("correlation_id"):
            outgoing["x-correlation-id"] = correlation_id
        outgoing["x-forwarded-for"] = ip
        outgoing["x-forwarded-proto"] = scope.get("scheme", "http")
        query = scope.get("query_string", b"")
        # The path as it came, still percent-encoded: the decoded one would turn an
        # encoded "?" or "/" inside a parameter into a different request upstream.
        raw_path: bytes = scope.get("raw_path") or path.encode()
        upstream_path = raw_path.decode("latin-1")
        target = f"{upstream_path}?{query.decode('latin-1')}" if query else upstream_path

        try:
            async with state.upstreams.request(
                service, method, target, headers=outgoing, data=body or None, allow_redirects=False
            ) as upstream:
                payload = await upstream.read()
                headers = [
                    (k.lower().encode("latin-1"), v.encode("latin-1"))
                    for k, v in upstream.headers.items()
                    if k.lower().encode("latin-1") not in _REPLACED_IN_RESPONSE
                ]
                status = upstream.status
        except TimeoutError as exc:
            log.warning("upstream_timeout", service=service)
            raise GatewayTimeout(f"The {service} service did not answer in time.") from exc
        except aiohttp.ClientError as exc:
            log.warning("upstream_unavailable", service=service, error=str(exc))
            raise BadGateway(f"The {service} service is unavailable.") from exc

        if cache_key is not None:
            stored = storable_response(
                status, headers, payload, settings.public_cache_max_entry_bytes
            )
            if stored is not None:
                state.public_cache.put(cache_key, stored, cache_ticket)
        if x_cache:
            headers.append((b"x-cache", x_cache))
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _send_cached(send: Send, cached: CachedResponse) -> None:
    headers = [
        *cached.headers,
        (b"x-cache", b"hit"),
        (b"content-length", str(len(cached.body)).encode()),
    ]
    await send({"type": "http.response.start", "status": cached.status, "headers": headers})
    await send({"type": "http.response.body", "body": cached.body})


def _email_in(body: bytes, content_type: str | None) -> str | None:
    """The email a rate-limited request is about, to limit per address as well as per IP."""
    if not body or not content_type or "json" not in content_type:
        return None
    try:
        email = json.loads(body).get("email")
    except (ValueError, AttributeError):
        return None
    return email if isinstance(email, str) and len(email) <= 320 else None
