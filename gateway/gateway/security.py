"""Security at the edge: response headers, CSRF, rate limits, client address, header hygiene."""

from __future__ import annotations

import hmac
import re
import secrets
import time
from urllib.parse import urlsplit

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config import GatewaySettings
from kit.errors import TooManyRequests

# Headers a client must never be able to set for a service: the gateway
# speaks for the client with these, or they steer internal routing.
INTERNAL_HEADER_PREFIXES = (b"x-clientele-", b"x-forwarded-", b"x-internal-", b"x-real-ip")
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)

DEFAULT_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


# Storefront pages rendered with ?embed=1 may be framed by any site (coaches put
# them on their own websites). Only a page response under /b/ that carries the
# marker below gets this policy and no X-Frame-Options; the marker never leaves.
def cookie_value(raw: str, name: str) -> str | None:
    """One cookie of a raw ``Cookie`` header (the hot paths skip the framework's parsing)."""
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value or None
    return None


FRAMEABLE_MARKER = b"x-clientele-frameable"
FRAMEABLE_PREFIX = "/b/"
EMBED_CSP = DEFAULT_CSP.replace("frame-ancestors 'none'", "frame-ancestors *")

# Checkout pages load Stripe.js, which frames its card fields and talks to Stripe's API.
# Only a checkout page (or a subscription's new-card page) response that carries this
# marker gets a policy allowing the configured Stripe.js origin; every other page keeps
# the default; the marker never leaves.
STRIPE_MARKER = b"x-clientele-stripe"
CHECKOUT_PATH = re.compile(r"^/b/[a-z0-9-]{1,80}/offerings/[0-9a-fA-F-]{32,36}/checkout$")
CARD_PATH = re.compile(r"^/billing/subscriptions/[0-9a-fA-F-]{32,36}/card$")
REAL_STRIPE_JS_ORIGIN = "https://js.stripe.com"


def checkout_csp(stripe_js_url: str) -> str:
    """The default policy plus Stripe.js: script, frames and API calls of its origin.

    Real Stripe.js frames from js.stripe.com and hooks.stripe.com (3-D Secure) and
    calls api.stripe.com; a double (localstripe) serves and answers from one origin.
    """
    parts = urlsplit(stripe_js_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    if origin == REAL_STRIPE_JS_ORIGIN:
        scripts = f"{origin} https://*.js.stripe.com"
        frames = f"{origin} https://*.js.stripe.com https://hooks.stripe.com"
        connect = "https://api.stripe.com"
    else:
        scripts = frames = connect = origin
    return DEFAULT_CSP.replace("script-src 'self'", f"script-src 'self' {scripts}").replace(
        "object-src 'none'",
        f"frame-src {frames}; connect-src 'self' {connect}; object-src 'none'",
    )


class SecurityHeadersMiddleware:
    """Adds the security headers to every response that did not choose its own."""

    def __init__(self, app: ASGIApp, *, hsts: bool, stripe_js_url: str = "") -> None:
        self.app = app
        self.checkout_csp = checkout_csp(stripe_js_url).encode() if stripe_js_url else None
        self.headers: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            # Links may carry tokens in their query: never send URLs to other sites.
            (b"referrer-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=63072000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if FRAMEABLE_MARKER in present:
                    headers = [h for h in headers if h[0].lower() != FRAMEABLE_MARKER]
                    if frameable(scope):
                        headers = [
                            h
                            for h in headers
                            if h[0].lower() not in (b"x-frame-options", b"content-security-policy")
                        ]
                        headers.append((b"content-security-policy", EMBED_CSP.encode()))
                        present = {name.lower() for name, _ in headers} | {b"x-frame-options"}
                if STRIPE_MARKER in present:
                    headers = [h for h in headers if h[0].lower() != STRIPE_MARKER]
                    if self.checkout_csp is not None and checkout_page(scope):
                        headers = [h for h in headers if h[0].lower() != b"content-security-policy"]
                        headers.append((b"content-security-policy", self.checkout_csp))
                        present.add(b"content-security-policy")
                    present.discard(STRIPE_MARKER)
                headers.extend(h for h in self.headers if h[0] not in present)
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", DEFAULT_CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def frameable(scope: Scope) -> bool:
    """Only storefront pages (never the API, never another page) may opt into framing."""
    path = str(scope.get("path", ""))
    return path.startswith(FRAMEABLE_PREFIX) and not path.startswith("/api/")


def checkout_page(scope: Scope) -> bool:
    """Only the checkout page of an offering and a subscription's new-card page may load
    Stripe.js."""
    path = str(scope.get("path", ""))
    return bool(CHECKOUT_PATH.match(path) or CARD_PATH.match(path))


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(from_cookie: str | None, submitted: str | None) -> bool:
    """Double-submit check: the form (or header) must repeat the cookie's value."""
    if not from_cookie or not submitted:
        return False
    return hmac.compare_digest(from_cookie.encode(), submitted.encode())


def origin_allowed(origin: str | None, public_base_url: str) -> bool:
    """A browser's Origin on an unsafe request must be our own public origin."""
    if origin is None:
        return True  # not sent by every client; the CSRF token still protects
    return origin.rstrip("/") == public_base_url.rstrip("/")


def client_address(scope: Scope, trusted_proxy_count: int) -> str:
    """The caller's IP: the socket peer, or what our own trusted proxies appended."""
    peer = (scope.get("client") or ("unknown", 0))[0]
    if trusted_proxy_count <= 0:
        return str(peer)
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            hops = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
            if len(hops) >= trusted_proxy_count:
                return hops[-trusted_proxy_count]
    return str(peer)


class RateLimits:
    """Named buckets (signup, login, magic_link, password_reset, checkout), each per IP
    and per email."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.storage = storage_from_string(f"async+{settings.rate_limit_storage}")
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.items: dict[str, RateLimitItem] = {
            "signup": parse(settings.rate_limit_signup),
            "login": parse(settings.rate_limit_login),
            "magic_link": parse(settings.rate_limit_magic_link),
            "password_reset": parse(settings.rate_limit_password_reset),
            "checkout": parse(settings.rate_limit_checkout),
        }

    async def hit(self, bucket: str, ip: str, email: str | None = None) -> None:
        item = self.items[bucket]
        keys = [("ip", ip)] + ([("email", email.strip().lower())] if email else [])
        for kind, value in keys:
            if not await self.limiter.hit(item, bucket, kind, value):
                stats = await self.limiter.get_window_stats(item, bucket, kind, value)
                retry_after = max(1, int(stats.reset_time - time.time()) + 1)
                raise TooManyRequests(
                    "Too many attempts. Please wait a moment and try again.",
                    retry_after=retry_after,
                )
