"""CPU of a granted hold's own Python on the front's path, outside any server (issue 15).

Not a test. The HTTP rows measure a grant's whole server (uvicorn, Redis and PostgreSQL
clients, the limiter, the commit); a change of a microsecond or two to the front's own steps
is lost in their noise on a shared machine. This times, in one process with no I/O, the two
pieces of the front whose cost is per request:

- a new citizen token verified (``TokenIssuer.account_of``: at a release most tokens are new
  to a worker);
- the synchronous steps of a batch's grant: the request's ``HoldAsk``, its ``_Granting``, the
  pool's ask, the record's entry, the outcome and the 201's body (``FrontGrants._answer``).

Run it once per tree, the tree first on the path, alternately, and compare the minima:

    PYTHONPATH=/tmp/main-export .venv/bin/python bench/grant_path_cost.py main
    .venv/bin/python bench/grant_path_cost.py branch
"""

from __future__ import annotations

import sys
import time
import timeit
from datetime import UTC, datetime, timedelta

from guahao.platform.client_context import ClientContext
from guahao.platform.hospitals import HospitalPolicies
from guahao.platform.ports import HoldGrant
from guahao.platform.services import hold_grants
from guahao.platform.services.runtime import SlotFacts
from guahao.web.auth import TokenIssuer
from guahao.web.front_answers import compress
from guahao.web.front_grants import FrontGrants, _Asked

BATCH = 20  # grants a loop turn carried over HTTP (bench/README.md, branch grant8)
TOKENS = 20_000


def _token_cost() -> list[float]:
    issuer = TokenIssuer("a-signing-secret-of-at-least-32-characters", 30)
    tokens = [issuer.issue(f"acct-{n:08d}") for n in range(TOKENS)]
    costs = []
    for _ in range(7):
        issuer._verified.clear()
        started = time.process_time()
        for token in tokens:
            issuer.account_of(token)
        costs.append((time.process_time() - started) / TOKENS * 1e6)
    return costs


def _grant_cost() -> list[float]:
    now = datetime.now(UTC)
    facts = SlotFacts(
        slot_id="s" * 32,
        session_id="e" * 32,
        hospital_id="h1",
        timezone="Asia/Shanghai",
        policies=HospitalPolicies(),
        starts_at=now + timedelta(days=2),
        ends_at=now + timedelta(days=2, minutes=10),
        fee_cents=500,
        hospital_name="市第一医院",
        department_name="内科",
        doctor_name="张医生",
    )
    client = ClientContext("i" * 32, "d" * 32)
    front = FrontGrants(minimum_size=500, compress=compress)

    def batch() -> None:
        asks = [hold_grants.HoldAsk("a" * 32, "s" * 32, "k" * 36, client) for _ in range(BATCH)]
        granting = [hold_grants._Granting(ask, n) for n, ask in enumerate(asks)]
        for g in granting:
            g.facts, g.now, g.now_ms = facts, now, 1_700_000_000_000
        for g, asked in zip(granting, [g.hold_asked() for g in granting], strict=True):
            g.granted(HoldGrant(asked.hold_id, asked.now_ms + asked.ttl_ms))
        for g in granting:
            g.record()
            booking = g.booking()
            g.outcome = hold_grants.HoldOutcome(booking, booking, False, facts)
            front._answer(g.answered(), _Asked(g.ask, b"gzip", "request-id", None))  # type: ignore[arg-type]

    rounds = 2_000
    return [t / rounds / BATCH * 1e6 for t in timeit.repeat(batch, number=rounds, repeat=7)]


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "this tree"
    for label, costs in (
        ("new token verified", _token_cost()),
        ("grant's own steps", _grant_cost()),
    ):
        costs.sort()
        print(f"{name}: {label}: min {costs[0]:.2f} us, median {costs[3]:.2f} us")


if __name__ == "__main__":
    main()
