"""The README's curl journey, for real: ``guahao demo`` as a subprocess, then
``docs/booking-journey.sh`` against it.

The demo builds its region on the embedded default (SQLite and its own redis-server in a
temporary data directory) and announces ``Guahao is running at URL`` once it serves; seeding
takes tens of seconds. It runs in its own process group, which is stopped with SIGTERM (and
SIGKILL only if that fails) whatever the outcome.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.support import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "booking-journey.sh"
READY = re.compile(r"Guahao is running at (http://\S+?)/?\s")
STARTUP_SECONDS = 180
STOP_SECONDS = 30


def _demo_command() -> list[str]:
    installed = Path(sys.executable).with_name("guahao")
    if installed.exists():
        return [str(installed), "demo"]
    return [sys.executable, "-m", "guahao.cli", "demo"]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def running_demo(data_dir: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``guahao demo`` and yield its URL and process once it announces itself; stop it
    after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUAHAO_")}
    env |= {
        "GUAHAO_DATA_DIR": str(data_dir),
        "GUAHAO_HOST": "127.0.0.1",
        "GUAHAO_PORT": str(free_port()),
    }
    with log.open("wb") as sink:
        demo = subprocess.Popen(
            _demo_command(),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, with its redis-server
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            found = READY.search(log.read_text(errors="replace"))
            if found:
                break
            if demo.poll() is not None:
                pytest.fail(f"guahao demo exited with {demo.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"guahao demo not ready after {STARTUP_SECONDS} s:\n{_tail(log)}")
            time.sleep(0.2)
        yield found.group(1), demo
    finally:
        _stop(demo)


def _stop(demo: subprocess.Popen[bytes]) -> None:
    pgid = demo.pid  # the session leader: its pid is the group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        demo.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        demo.wait(timeout=STOP_SECONDS)
        pytest.fail("guahao demo did not stop on SIGTERM")
    # The embedded redis-server is stopped by the demo itself; make sure nothing lingers.
    deadline = time.monotonic() + STOP_SECONDS
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        pytest.fail("a process of the demo's group outlived it")


def _children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: field 4 of each stat line)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@pytest.mark.slow
def test_the_curl_journey_runs_against_the_demo(tmp_path: Path) -> None:
    assert shutil.which("curl"), "the journey script needs curl"
    log = tmp_path / "demo.log"
    with running_demo(tmp_path / "data", log) as (url, demo):
        run = subprocess.run(
            ["bash", str(SCRIPT)],
            env=os.environ | {"GUAHAO_URL": url, "GUAHAO_DEMO_LOG": str(log)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # Killed outright (no clean-up code runs), the demo must not leave its redis-server
        # and its two HIS simulators behind: the kernel stops them (parent-death signal).
        children = _children_of(demo.pid)
        os.kill(demo.pid, signal.SIGKILL)
        demo.wait(timeout=STOP_SECONDS)
        deadline = time.monotonic() + STOP_SECONDS
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = [c for c in children if _alive(c)]
    assert len(children) >= 3, children  # redis-server and the two simulators at least
    assert not orphans, f"children of the killed demo still running: {orphans}"
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"{output}\n--- demo log ---\n{_tail(log)}"
    steps = [line for line in run.stdout.splitlines() if line.startswith("==> ")]
    assert len(steps) == 12, steps
    assert "gateway notice handled: confirmed" in run.stdout
    assert re.search(r"status: confirmed, paid: True", run.stdout), run.stdout
    assert "status: cancelled_by_patient" in run.stdout
    assert "was confirmed, then cancelled" in run.stdout
