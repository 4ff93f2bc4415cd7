"""A throwaway PostgreSQL cluster for tests and local runs (standard library only).

Run as a script::

    python infra/local_postgres.py start DIR [--port N]   # prints a SQLAlchemy URL
    python infra/local_postgres.py createdb DIR NAME
    python infra/local_postgres.py dropdb DIR NAME
    python infra/local_postgres.py url DIR
    python infra/local_postgres.py stop DIR

or import it (``from infra import local_postgres``) and call the functions of the same names.

``DIR`` holds everything of one cluster: ``DIR/data`` (the cluster), ``DIR/sock`` (its Unix
socket) and ``DIR/postgres.log``. The cluster trusts every local and loopback connection and
runs with durability switched off (``fsync``, ``synchronous_commit``, ``full_page_writes``):
it is for tests and demos, never for data anyone wants to keep.

PostgreSQL refuses to run as root. When this runs as root, the server programs run as the
``postgres`` OS user through ``runuser`` (the user is created if missing) and ``DIR`` is handed
to that user; every parent of ``DIR`` must let that user through (``/tmp`` does, a directory
made by ``mkdtemp`` or pytest's ``tmp_path`` under ``/root`` does not). Run as anyone else, the
programs run as the caller. Binaries are found in ``$GUAHAO_PG_BINDIR``, then on ``PATH``, then
in Debian's ``/usr/lib/postgresql/<version>/bin`` (newest first).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "SERVER_SETTINGS",
    "SUPERUSER",
    "PostgresError",
    "PostgresNotInstalledError",
    "createdb",
    "dropdb",
    "find_binary",
    "free_port",
    "is_running",
    "main",
    "running_port",
    "start",
    "stop",
    "url",
]

SUPERUSER = "postgres"
"""The cluster's superuser, and the OS user the server runs as when we are root."""

SERVER_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "checkpoint_timeout": "30min",
    "max_wal_size": "1GB",
    "timezone": "UTC",
    "log_timezone": "UTC",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] %d ",
}
"""Settings for a throwaway test cluster: fast, not durable."""

_BINDIR_ENV = "GUAHAO_PG_BINDIR"
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_SETTINGS_FILE = "guahao.conf"
_UNIX_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PostgresError(RuntimeError):
    """A PostgreSQL program failed or the cluster could not be used."""


class PostgresNotInstalledError(PostgresError):
    """The PostgreSQL server programs are not on this machine."""


def find_binary(name: str) -> Path:
    """The path of the PostgreSQL program ``name`` (``initdb``, ``pg_ctl``, ``psql``, …).

    Raises:
        PostgresNotInstalledError: no such program in any of the places searched.
    """
    override = os.environ.get(_BINDIR_ENV)
    if override:
        candidate = Path(override) / name
        if os.access(candidate, os.X_OK):
            return candidate
        raise PostgresNotInstalledError(f"{_BINDIR_ENV}={override} has no executable {name}")
    # Debian's /usr/bin/psql is a wrapper that needs a configured cluster; the real programs
    # live in the versioned directory, so that one wins over PATH when it exists.
    for bindir in _debian_bindirs():
        candidate = bindir / name
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise PostgresNotInstalledError(
        f"PostgreSQL program {name!r} not found in {_DEBIAN_ROOT}/*/bin or on PATH "
        f"(install Debian's postgresql package, or set {_BINDIR_ENV})"
    )


def _debian_bindirs() -> list[Path]:
    if not _DEBIAN_ROOT.is_dir():
        return []
    versions = [p for p in _DEBIAN_ROOT.iterdir() if p.name.isdigit() and (p / "bin").is_dir()]
    return [p / "bin" for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def url(directory: Path | str, database: str = SUPERUSER) -> str:
    """The SQLAlchemy URL of ``database`` on the running cluster in ``directory``."""
    port = running_port(directory)
    if port is None:
        raise PostgresError(f"no PostgreSQL server is running in {directory}")
    return _url(port, database)


def _url(port: int, database: str) -> str:
    return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{port}/{database}"


def is_running(directory: Path | str) -> bool:
    """Whether the cluster in ``directory`` has a live server."""
    return running_port(directory) is not None


def running_port(directory: Path | str) -> int | None:
    """The port of the live server of the cluster in ``directory``, or ``None``."""
    data = _layout(directory)[0]
    if not (data / "PG_VERSION").exists():
        return None
    status = subprocess.run(
        _as_server_user([str(find_binary("pg_ctl")), "status", "-D", str(data)]),
        cwd=Path(directory),
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if status.returncode != 0:
        return None
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        return int(lines[3])
    except (OSError, IndexError, ValueError):
        return None


def start(directory: Path | str, port: int | None = None, timeout: float = 60.0) -> str:
    """Initialise (if needed) and start the cluster in ``directory``; return its admin URL.

    A cluster that is already running is left alone and its URL returned. Without ``port`` a
    free one is picked (and another tried should it be taken before the server binds it).

    Raises:
        PostgresNotInstalledError: the server programs are missing.
        PostgresError: the cluster could not be initialised or started.
    """
    directory = Path(directory).absolute()
    data, sockets, log = _layout(directory)
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if len(str(sockets / ".s.PGSQL.65535")) > _UNIX_SOCKET_PATH_MAX:
        raise PostgresError(f"{directory} is too long a path for a Unix socket; use a shorter one")
    _prepare_directory(directory, sockets)
    current = running_port(directory)
    if current is not None:
        if port is not None and port != current:
            raise PostgresError(f"the cluster in {directory} already runs on port {current}")
        return _url(current, SUPERUSER)
    if not (data / "PG_VERSION").exists():
        _run(
            [
                str(initdb),
                "--pgdata",
                str(data),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
                "--no-instructions",
            ],
            directory,
            "initdb",
        )
        with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"\ninclude_if_exists = '{_SETTINGS_FILE}'\n")
    attempts = 1 if port is not None else 3
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port()
        _write_settings(data, chosen, sockets)
        try:
            _run(
                [
                    str(pg_ctl),
                    "start",
                    "--pgdata",
                    str(data),
                    "--log",
                    str(log),
                    "--wait",
                    "--timeout",
                    str(int(timeout)),
                    "--silent",
                ],
                directory,
                "pg_ctl start",
                log=log,
            )
        except PostgresError:
            if attempt == attempts:
                raise
            continue
        _wait_for_tcp(chosen, timeout)
        return _url(chosen, SUPERUSER)
    raise AssertionError("unreachable")  # pragma: no cover


def stop(directory: Path | str) -> None:
    """Stop the server of the cluster in ``directory`` (fast mode); no-op if none runs."""
    directory = Path(directory).absolute()
    data = _layout(directory)[0]
    if not is_running(directory):
        return
    _run(
        [str(find_binary("pg_ctl")), "stop", "--pgdata", str(data), "--mode", "fast", "--wait"],
        directory,
        "pg_ctl stop",
    )


def createdb(directory: Path | str, name: str) -> str:
    """Create the empty database ``name`` on the running cluster; return its SQLAlchemy URL."""
    _client(directory, "createdb", name)
    return url(directory, name)


def dropdb(directory: Path | str, name: str) -> None:
    """Drop the database ``name`` (if it exists), disconnecting whoever still uses it."""
    _client(directory, "dropdb", "--if-exists", "--force", name)


def _client(directory: Path | str, program: str, *args: str) -> None:
    name = args[-1]
    if not _NAME.fullmatch(name):
        raise PostgresError(f"database name {name!r} must match {_NAME.pattern}")
    directory = Path(directory).absolute()
    port = running_port(directory)
    if port is None:
        raise PostgresError(f"no PostgreSQL server is running in {directory}")
    _run(
        [
            str(find_binary(program)),
            "--host",
            str(_layout(directory)[1]),
            "--port",
            str(port),
            "--username",
            SUPERUSER,
            "--no-password",
            *args,
        ],
        directory,
        program,
        as_server_user=False,
    )


def _layout(directory: Path | str) -> tuple[Path, Path, Path]:
    base = Path(directory).absolute()
    return base / "data", base / "sock", base / "postgres.log"


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _as_server_user(command: Sequence[str]) -> list[str]:
    if not _running_as_root():
        return list(command)
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", SUPERUSER, "--", *command]


def _ensure_server_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/var/lib/postgresql",
            "--shell",
            "/bin/sh",
            SUPERUSER,
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return pwd.getpwnam(SUPERUSER)


def _prepare_directory(directory: Path, sockets: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    sockets.mkdir(exist_ok=True)
    if not _running_as_root():
        return
    user = _ensure_server_user()
    for root, dirs, files in os.walk(directory):
        os.chown(root, user.pw_uid, user.pw_gid)
        for entry in (*dirs, *files):
            os.chown(os.path.join(root, entry), user.pw_uid, user.pw_gid, follow_symlinks=False)
    reachable = subprocess.run(
        _as_server_user(["test", "-w", str(directory), "-a", "-x", str(directory)]),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if reachable.returncode != 0:
        raise PostgresError(
            f"the {SUPERUSER} OS user cannot reach {directory}: some parent directory does not "
            "let it through (use a directory under /tmp)"
        )


def _write_settings(data: Path, port: int, sockets: Path) -> None:
    settings = {
        **SERVER_SETTINGS,
        "port": str(port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(sockets),
    }
    lines = [f"{key} = '{value.replace(chr(39), chr(39) * 2)}'" for key, value in settings.items()]
    target = data / _SETTINGS_FILE
    target.write_text("# written by infra/local_postgres.py at each start\n" + "\n".join(lines))
    if _running_as_root():
        user = pwd.getpwnam(SUPERUSER)
        os.chown(target, user.pw_uid, user.pw_gid)


def _run(
    command: Sequence[str],
    directory: Path,
    what: str,
    *,
    log: Path | None = None,
    as_server_user: bool = True,
) -> None:
    full = _as_server_user(command) if as_server_user else list(command)
    result = subprocess.run(
        full,
        cwd=directory,
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        return
    detail = (result.stderr or result.stdout).strip()
    if log is not None and log.exists():
        tail = log.read_text(errors="replace").splitlines()[-20:]
        detail += "\n--- " + str(log) + " ---\n" + "\n".join(tail)
    raise PostgresError(f"{what} failed (exit {result.returncode}): {detail}")


def _clean_env() -> dict[str, str]:
    """The environment without libpq's variables, which would redirect the programs."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _wait_for_tcp(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1.0):
            return
        if time.monotonic() > deadline:
            raise PostgresError(f"PostgreSQL did not accept connections on 127.0.0.1:{port}")
        time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="local_postgres.py", description="A throwaway PostgreSQL cluster for tests."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start_cmd = commands.add_parser("start", help="initialise if needed, start, print the URL")
    start_cmd.add_argument("directory", type=Path)
    start_cmd.add_argument("--port", type=int, default=None)
    for name, text in (("stop", "stop the server (fast mode)"), ("url", "print the admin URL")):
        commands.add_parser(name, help=text).add_argument("directory", type=Path)
    for name, text in (("createdb", "create an empty database"), ("dropdb", "drop a database")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("directory", type=Path)
        sub.add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            print(start(args.directory, args.port))
        elif args.command == "stop":
            stop(args.directory)
        elif args.command == "url":
            print(url(args.directory))
        elif args.command == "createdb":
            print(createdb(args.directory, args.name))
        else:
            dropdb(args.directory, args.name)
    except PostgresNotInstalledError as exc:
        print(f"local_postgres: {exc}", file=sys.stderr)
        return 3
    except (PostgresError, subprocess.CalledProcessError) as exc:
        print(f"local_postgres: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
