"""``guahao serve --workers N`` for the HTTP surge bench, on the embedded search index.

``guahao serve`` refuses several workers on the embedded search index, whose columns live in
each process and would go stale in all workers but the one that applies the outbox's search
events. The bench changes nothing a search could see while it runs, so every worker's copy,
loaded at its start from the one index file, answers exactly as a shared Meilisearch would;
this starts the same supervisor and workers without that refusal, and is for the bench only.
"""

from __future__ import annotations

import argparse

from guahao.config import load_settings
from guahao.worker_processes import (
    ACCEPT_BALANCES,
    bind_listeners,
    migrate_once,
    replaced_side_by_side,
    supervise,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument(
        "--balance",
        choices=ACCEPT_BALANCES,
        help="how connections are spread over the workers (default: the settings')",
    )
    options = parser.parse_args()
    settings = load_settings()
    migrate_once(settings)
    listeners = bind_listeners(
        "127.0.0.1",
        options.port,
        options.workers,
        settings.http_backlog,
        balance=options.balance or settings.http_accept_balance,
    )
    raise SystemExit(
        supervise(listeners, options.workers, overlaps=replaced_side_by_side(settings))
    )


if __name__ == "__main__":
    main()
