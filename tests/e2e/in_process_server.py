"""uvicorn serving an app in the test's own event loop, for the live-server fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn

__all__ = ["InProcessServer"]


class InProcessServer(uvicorn.Server):
    """uvicorn without its signal handlers (Ctrl+C must still reach pytest) that stops when told.

    uvicorn's own main loop looks at ``should_exit`` every 0.1 s and its shutdown sleeps 0.1 s
    for open connections to close: with ~280 live-server tests that was ~40 s of workers idle.
    Here the loop waits for ``stop()``, and a shutdown with no connection or task left skips
    the sleep; the lifespan's shutdown runs as before."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._stopping.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        await self.on_tick(0)  # sets the default headers (the date), as uvicorn's first tick
        await self._stopping.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)
            return
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()
