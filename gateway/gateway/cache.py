"""A small in-process cache for public catalog reads, invalidated by catalog events.

What may be cached: only what is the same for every visitor. The proxy
caches anonymous ``GET`` answers (no ``Authorization`` header, no session
cookie, no body) of allow-listed paths (:data:`CACHEABLE_API_PATHS`), and
only ``200`` answers without ``Set-Cookie``. A request that carries a token
or a session cookie always goes to the service, so one viewer's eligibility
is never served to another.

Correctness over speed:

- Any catalog event (``catalog.#``) empties the whole cache. That is simple
  and obviously correct: no event has to be mapped to the keys it affects.
  Catalog changes are rare next to reads.
- The events come through an exclusive, auto-delete queue of this process
  (:class:`InvalidationListener`). While that queue is not consuming (the
  broker is down, the listener has not started yet, the connection was
  lost) the cache is *bypassed* and empty: it can never hold an answer that
  an event it did not hear about would have removed. It is emptied again
  when the listener is back.
- Every clear starts a new *generation*. A value is only stored under the
  ticket taken *before* it was fetched, and only if no clear happened in
  between, so an answer fetched before a change cannot land in the cache
  after the event of that change was handled.
- A TTL (``GATEWAY_PUBLIC_CACHE_SECONDS``, default 60 s; 0 disables the
  cache) is only a safety net, and the number of entries is bounded (LRU).

For pages (``state.public_cache``; one :class:`PublicCache` per gateway process)::

    # Either cache the *data* that is the same for everyone (here the catalog's
    # anonymous packages reply, fetched without a token) and render per request:
    async def fetch() -> dict[str, Any] | None:
        reply = await state.upstreams.call(
            "catalog", "GET", f"/api/v1/catalog/public/businesses/{slug}/packages"
        )
        return reply.body if reply.status == 200 else None  # None: not cached

    packages = await state.public_cache.cached(f"page:packages:{slug}", fetch)

    # ...or, for speed (rendering with Jinja costs far more than the lookup), the
    # rendered bytes of the page an *anonymous* visitor gets, when that render holds
    # nothing per visitor (no CSRF token, notice or menu) and sets no cookie.

Only 200 answers should be kept: a 404 (say, a business the catalog has not
heard of yet) would not be cleared by a catalog event when it starts to exist.

``cached(key, producer)`` returns the cached value or awaits ``producer()``
and stores what it returns unless that is ``None`` (when the cache is
bypassed it simply calls the producer). Or, in two steps within one
request::

    html = await cache.get(key)          # None on a miss or while bypassed
    if html is None:
        html = render(...)               # what an anonymous visitor sees
        await cache.set(key, html)       # kept only if nothing was invalidated since get()

``set`` only stores when the same request (the same task context) missed
that key with ``get`` and no invalidation happened since; a ``set`` without
a ``get`` stores nothing. ``business_id`` is accepted and unused (any
catalog event clears everything). The synchronous ``lookup(key)``,
``ticket()`` (taken *before* producing) and ``put(key, value, ticket)`` are
what the proxy uses on its hot path. Never cache anything
rendered for a logged-in viewer, a response that sets a cookie, or HTML
that holds a per-visitor value (CSRF token, nonce). Keys are free-form
strings; the proxy's keys start with ``api:``, so use another prefix.
Cached values are shared objects: do not mutate them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import re
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aio_pika.abc import AbstractIncomingMessage

from kit.logging import get_logger
from kit.messaging import Broker, Topology
from kit.messaging.broker import declare_exchanges

log = get_logger(__name__)

T = TypeVar("T")

# Anonymous GETs of these paths may be answered from the cache.
CACHEABLE_API_PATHS = (re.compile(r"^/api/v1/catalog/public/businesses/[^/]{1,200}/packages$"),)
# Response headers kept with a cached answer (the gateway adds its own on the way out).
STORED_HEADERS = frozenset(
    {
        b"content-type",
        b"content-language",
        b"cache-control",
        b"etag",
        b"last-modified",
        b"expires",
        b"vary",
    }
)
INVALIDATING_EVENTS = "catalog.#"

# The ticket of each key this request missed with get(), for its set().
_missed: contextvars.ContextVar[dict[str, int | None] | None] = contextvars.ContextVar(
    "public_cache_missed", default=None
)


def cacheable_api_path(path: str) -> bool:
    return any(pattern.match(path) for pattern in CACHEABLE_API_PATHS)


@dataclass(frozen=True)
class CachedResponse:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def storable_response(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, max_bytes: int
) -> CachedResponse | None:
    """What to keep of a proxied answer, or None when it must not be cached."""
    if status != 200 or len(body) > max_bytes:
        return None
    kept = []
    for name, value in headers:
        if name in (b"set-cookie", b"content-encoding"):
            return None
        if name == b"cache-control" and re.search(rb"no-store|private|no-cache", value, re.I):
            return None
        if name == b"vary" and any(
            part.strip().lower() not in (b"accept-encoding", b"") for part in value.split(b",")
        ):
            return None  # it differs by something about the request we do not key on
        if name in STORED_HEADERS:
            kept.append((name, value))
    return CachedResponse(status, tuple(kept), body)


class PublicCache:
    """Bounded LRU with a TTL, active only while the invalidation listener is consuming."""

    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._generation = 0
        self._listening = False
        self.hits = self.misses = self.bypasses = self.clears = 0

    # -- state ----------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0 and self.max_entries > 0

    @property
    def active(self) -> bool:
        """Answers may be read and stored (enabled, and invalidation events arrive)."""
        return self.enabled and self._listening

    def set_listening(self, listening: bool) -> None:
        """Called by the listener; either way the cache starts empty (events may be lost)."""
        self._listening = listening
        self.clear()

    def clear(self) -> None:
        self._entries.clear()
        self._generation += 1
        self.clears += 1

    def __len__(self) -> int:
        return len(self._entries)

    # -- reads and writes -----------------------------------------------------

    def lookup(self, key: str) -> Any | None:
        """The cached value, or None on a miss, an expired entry, or while bypassed."""
        if not self.active:
            self.bypasses += 1
            return None
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        expires_at, value = entry
        if expires_at <= self._clock():
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def ticket(self) -> int | None:
        """Take before producing a value; ``None`` while bypassed (nothing will be stored)."""
        return self._generation if self.active else None

    def put(self, key: str, value: Any, ticket: int | None) -> bool:
        """Store ``value`` unless the cache was cleared since ``ticket`` was taken."""
        if ticket is None or ticket != self._generation or not self.active:
            return False
        self._entries[key] = (self._clock() + self.ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    async def get(self, key: str) -> Any | None:
        """Like :meth:`lookup`; a miss remembers its ticket for :meth:`set` in this request."""
        value = self.lookup(key)
        if value is None:
            missed = dict(_missed.get() or {})  # a copy: never change another context's dict
            missed[key] = self.ticket()
            _missed.set(missed)
        return value

    async def set(self, key: str, value: Any, *, business_id: str | None = None) -> bool:
        """Store what this request produced after its :meth:`get` missed ``key``."""
        missed = _missed.get() or {}
        if key not in missed:
            return False
        ticket = missed[key]
        _missed.set({k: v for k, v in missed.items() if k != key})
        return self.put(key, value, ticket)

    async def cached(self, key: str, producer: Callable[[], Awaitable[T | None]]) -> T | None:
        value: T | None = self.lookup(key)
        if value is not None:
            return value
        ticket = self.ticket()
        value = await producer()
        if value is not None:
            self.put(key, value, ticket)
        return value


class InvalidationListener:
    """Consumes every ``catalog.*`` event on a queue of this process and clears the cache.

    The queue is exclusive, auto-delete and non-durable, named uniquely per
    process (each gateway replica hears every event). The connection comes
    from the kit :class:`Broker`; instead of relying on the robust
    connection's silent recovery, any sign of loss (connection or channel
    closed, consumer cancelled) marks the cache bypassed at once, and the
    loop here reconnects, re-declares and marks it active (and empty) again.
    """

    def __init__(
        self,
        cache: PublicCache,
        *,
        amqp_url: str,
        topology: Topology,
        retry_seconds: float = 2.0,
        max_retry_seconds: float = 10.0,
    ) -> None:
        self.cache = cache
        self.amqp_url = amqp_url
        self.topology = topology
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        instance = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.process_name = f"gateway-cache.{instance}"
        self.queue_name = f"{topology.namespace}gateway.public-cache.{instance}"
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self.cache.active

    async def start(self) -> None:
        """Returns at once: the broker may be down; the cache is bypassed until it answers."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="public-cache-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.cache.set_listening(False)

    async def _run(self) -> None:
        failures = 0
        while True:
            lost = asyncio.Event()
            broker = Broker(self.amqp_url, self.topology, self.process_name)
            try:
                await self._listen(broker, lost)
                self.cache.set_listening(True)
                failures = 0
                log.info("public_cache_listening", queue=self.queue_name)
                await lost.wait()
                log.warning("public_cache_listener_lost", queue=self.queue_name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning(
                    "public_cache_listener_unavailable", error=f"{type(exc).__name__}: {exc}"[:300]
                )
            finally:
                self.cache.set_listening(False)
                with contextlib.suppress(Exception):
                    await broker.close()
            # Bypassed meanwhile, so a longer pause costs speed only, never correctness.
            await asyncio.sleep(
                min(self.retry_seconds * 2 ** min(failures, 10), self.max_retry_seconds)
            )

    async def _listen(self, broker: Broker, lost: asyncio.Event) -> None:
        def on_loss(*_: Any) -> None:
            lost.set()

        connection = await broker.consume_connection(timeout=5)
        connection.close_callbacks.add(on_loss)
        channel = await connection.channel()
        channel.close_callbacks.add(on_loss)
        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(on_loss)
        events = await declare_exchanges(channel, self.topology)
        queue = await channel.declare_queue(
            self.queue_name, durable=False, exclusive=True, auto_delete=True
        )
        await queue.bind(events, routing_key=INVALIDATING_EVENTS)
        await queue.consume(self._on_message, no_ack=True)
        if lost.is_set() or connection.is_closed:
            raise ConnectionError("the connection closed while the listener started")

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Any catalog event empties the whole cache (see the module docstring).
        self.cache.clear()
        log.debug("public_cache_cleared", routing_key=message.routing_key)
