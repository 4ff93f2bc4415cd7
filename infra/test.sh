#!/usr/bin/env bash
# Run the test suite: prepare .venv (infra/setup.sh), then pytest with the arguments given
# (none: the whole suite). Paths are relative to the repository root.
#
#   bash infra/test.sh                          everything
#   bash infra/test.sh tests/unit -k booking    any pytest arguments
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash infra/setup.sh

status=0
.venv/bin/pytest "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "test: pytest collected no tests (exit 5); counting that as a failure" >&2
    exit 1
fi
exit "$status"
