#!/usr/bin/env bash
# Run the test suite: prepare .venv (infra/setup.sh), then pytest with the arguments given
# (none: the import contracts of pyproject.toml, then the whole suite). Paths are relative to
# the repository root.
#
#   bash infra/test.sh                          contracts, then everything on every core
#   bash infra/test.sh tests/unit -k booking    any pytest arguments
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash infra/setup.sh

# The whole suite runs on every core (pytest-xdist: each worker starts its own Redis and
# PostgreSQL); with arguments, pytest runs exactly as asked (add -n 2 yourself if you like).
if [[ $# -eq 0 ]]; then
    # The seams first (a second or so): an import across a forbidden boundary fails the run
    # before ten minutes of tests (`.venv/bin/lint-imports` runs them alone).
    .venv/bin/lint-imports
    # The slowest tests are listed at the end, so the suite's ten minutes can be kept watch on.
    # worksteal: a worker that runs out takes half of another's queue. xdist's default (load)
    # hands out tests by count, not time, and left one worker 50–100 s idle at the end.
    set -- -n auto --dist worksteal --durations=40 --durations-min=4
fi
status=0
.venv/bin/pytest "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "test: pytest collected no tests (exit 5); counting that as a failure" >&2
    exit 1
fi
exit "$status"
