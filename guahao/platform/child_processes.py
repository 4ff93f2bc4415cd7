"""Child processes that end with the process that started them.

The embedded default starts servers of its own (redis-server, the demo's HIS simulators). A
parent that is killed (SIGKILL, the OOM killer, a crashed container entrypoint) runs no
clean-up code, so its children would live on as orphans holding ports, sockets and files; the
kernel's parent-death signal stops them instead.
"""

from __future__ import annotations

import signal
import sys

__all__ = ["die_with_parent"]

PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal the kernel sends this process when its parent thread exits."""


def die_with_parent() -> None:
    """Run in the child between fork and exec (``preexec_fn``): ask Linux to send SIGTERM
    when the parent dies.

    Linux ties this to the *thread* that forked, so the child must be started from a
    long-lived thread (the main thread or the event loop's thread), never from a pool's
    worker thread, which may exit while the parent lives on. Elsewhere than Linux it does
    nothing: the parent's own shutdown stops its children there.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
