"""Children end with the process that started them, even one killed while it was starting
them (real processes: a parent killed with SIGKILL between its fork and its child's exec)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

_PARENT = """
import os, subprocess, sys, time
from guahao.platform.child_processes import die_with_parent
pid_file, armed = sys.argv[1], sys.argv[2]

def slow_start():
    with open(pid_file, "w") as out:
        out.write(str(os.getpid()))
    if armed == "late":
        time.sleep(1.5)  # the parent is killed meanwhile, before the signal is armed
    die_with_parent()

subprocess.Popen(["sleep", "60"], preexec_fn=slow_start)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _child_outlives_a_killed_parent(tmp_path: Path, armed: str) -> bool:
    pid_file = tmp_path / f"child-{armed}.pid"
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(pid_file), armed])
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.02)
        child = int(pid_file.read_text())
        if armed != "late":
            time.sleep(1.0)  # the child's exec done, its signal armed
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not _alive(child):
            return False
        time.sleep(0.05)
    os.kill(child, 9)
    return True


def test_a_child_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    assert not _child_outlives_a_killed_parent(tmp_path, "at-once")


def test_a_child_whose_parent_died_before_the_signal_was_armed_ends_too(tmp_path: Path) -> None:
    assert not _child_outlives_a_killed_parent(tmp_path, "late")
