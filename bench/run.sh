#!/usr/bin/env bash
# Release-surge benchmark with its baselines; see bench/README.md. Arguments go to
# bench/release_surge.py (e.g. --processes 1 2 --slots 5 --capacity 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "fhir-ingest" ]; then  # bash bench/run.sh fhir-ingest [--slots N] [--publish]
  shift
  exec .venv/bin/python bench/fhir_ingest.py "$@"
fi
if [ "${1:-}" = "http-surge" ]; then  # bash bench/run.sh http-surge [--seconds N] [--workers 1 2]
  shift
  command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
  exec .venv/bin/python bench/http_surge.py "$@"
fi
if [ "${1:-}" = "flow-surge" ]; then  # bash bench/run.sh flow-surge [--users N] [--seconds N]
  shift
  # Locust (gevent) in an environment of its own, never beside the platform's asyncio
  if [ ! -x .bench-venv/locust/bin/locust ]; then
    python3 -m venv .bench-venv/locust
    .bench-venv/locust/bin/pip install --quiet --disable-pip-version-check \
      -r bench/locust-requirements.txt
  fi
  exec .venv/bin/python bench/flow_surge.py "$@"
fi
if [ "${1:-}" = "search" ]; then  # bash bench/run.sh search [--doctors N] [--rounds N]
  shift
  exec .venv/bin/python bench/search_latency.py "$@"
fi
if ! command -v redis-benchmark >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null \
      || echo "apt-get could not install redis-tools: the Redis ceiling will be missing" >&2
  else
    echo "no apt-get here: install redis-benchmark by hand for the Redis ceiling" >&2
  fi
fi
exec .venv/bin/python bench/release_surge.py "$@"
