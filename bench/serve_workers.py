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
from guahao.worker_processes import bind_listener, migrate_once, supervise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    options = parser.parse_args()
    migrate_once(load_settings())
    raise SystemExit(supervise(bind_listener("127.0.0.1", options.port), options.workers))


if __name__ == "__main__":
    main()
