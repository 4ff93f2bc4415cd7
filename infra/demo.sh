#!/usr/bin/env bash
# Run the demo: prepare .venv (infra/setup.sh), then `guahao demo` with the arguments given.
# Set-up progress goes to stderr so that the demo's own output stays clean.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash infra/setup.sh >&2
exec .venv/bin/guahao demo "$@"
