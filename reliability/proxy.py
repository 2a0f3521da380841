"""TCP proxies in front of RabbitMQ and PostgreSQL that a scenario can cut or stall.

Every proxy runs on one event loop in a thread of its own (``ProxyHub``), so the
traffic keeps flowing while the scenario's own code blocks (starting a process,
waiting for it) and faults are switched from any thread.

- ``cut()``: open connections are aborted (RST) and new ones refused at once,
  as when a server or the network path dies.
- ``stall()``: connections stay open but no byte passes either way, and new ones
  are accepted but never answered: a half-open network, where only timeouts and
  heartbeats notice anything.
- ``restore()``: traffic flows again (stalled bytes are then delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

UP, CUT, STALLED = "up", "cut", "stalled"


class FaultProxy:
    def __init__(self, name: str, target_host: str, target_port: int) -> None:
        self.name = name
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.state = UP
        self.connections = 0  # accepted so far
        self._server: asyncio.AbstractServer | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.state == CUT:
            writer.transport.abort()
            return
        self._links.add(writer)
        try:
            await self._flowing.wait()  # a stalled proxy holds the connection unanswered
            if self.state == CUT or writer.is_closing():
                writer.transport.abort()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError:
                writer.transport.abort()
                return
            self._links.add(up_writer)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(Exception):
                    while data := await src.read(65536):
                        await self._flowing.wait()
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            self._links.discard(up_writer)
        finally:
            self._links.discard(writer)

    def _abort_all(self) -> None:
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    # Called on the hub's loop (ProxyHub.cut / stall / restore).
    def _cut(self) -> None:
        self.state = CUT
        self._abort_all()
        self._flowing.set()  # held connections wake up, see CUT and go

    def _stall(self) -> None:
        self.state = STALLED
        self._flowing.clear()

    def _restore(self) -> None:
        self.state = UP
        self._flowing.set()

    async def close(self) -> None:
        self._cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


class ProxyHub:
    """Owns the proxies' thread and loop; every method may be called from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="proxies", daemon=True)
        self._thread.start()
        self.proxies: dict[str, FaultProxy] = {}

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def add(self, name: str, host: str, port: int) -> FaultProxy:
        proxy = self._call(FaultProxy(name, host, port).start())
        self.proxies[name] = proxy
        return proxy

    def _switch(self, name: str, method: str) -> None:
        proxy = self.proxies[name]

        async def switch() -> None:
            getattr(proxy, method)()

        self._call(switch())

    def cut(self, name: str) -> None:
        self._switch(name, "_cut")

    def stall(self, name: str) -> None:
        self._switch(name, "_stall")

    def restore(self, name: str) -> None:
        self._switch(name, "_restore")

    def close(self) -> None:
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                self._call(proxy.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
