#!/usr/bin/env bash
# Make .venv ready: create it if missing, then install guahao with its dev extras, pinned by
# requirements.lock. Idempotent and fast when nothing changed: the install is skipped while
# the stamp in .venv matches pyproject.toml, requirements.lock and the interpreter.
#
#   bash infra/setup.sh            GUAHAO_PYTHON=/path/to/python3.11 to choose the interpreter
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
stamp="$venv/.guahao-setup-stamp"

say() { printf 'setup: %s\n' "$*"; }

pick_python() {
    local candidate
    for candidate in ${GUAHAO_PYTHON:-} python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "setup: no Python 3.11 or newer found (tried ${GUAHAO_PYTHON:-} python3.11 python3)" >&2
    return 1
}

# A venv whose interpreter no longer runs (moved or removed Python) is made again.
if [[ -e "$venv" ]] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "removing broken .venv"
    rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
    python="$(pick_python)"
    say "creating .venv with $python ($("$python" --version 2>&1))"
    "$python" -m venv "$venv"
fi

# Web assets come from the npm registry at set-up, never from a CDN at run time: `npm ci`
# when node_modules is missing or older than package-lock.json, then the files the app serves
# are copied into guahao/web/static/vendor (not committed).
web_assets() {
    local vendor="$root/guahao/web/static/vendor"
    if ! command -v npm >/dev/null 2>&1; then
        echo "setup: npm not found: install Node.js (Debian: apt-get install nodejs npm)" >&2
        return 1
    fi
    if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
        say "installing web assets (npm ci)"
        npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
        touch node_modules/.package-lock.json
    fi
    mkdir -p "$vendor"
    local file
    while read -r file; do
        [[ -z "$file" || "$file" == \#* ]] && continue
        if [[ ! -f "$vendor/$(basename "$file")" || "node_modules/$file" -nt "$vendor/$(basename "$file")" ]]; then
            cp "node_modules/$file" "$vendor/"
        fi
    done <"$root/infra/web_assets.txt"
    # Bundles built from npm packages (the console's reduced ECharts, gzipped once).
    (cd "$root" && bash infra/build_web_bundles.sh)
}
web_assets

# The tests' OpenID Connect provider (node-oidc-provider), pinned by its package-lock.json;
# reinstalled only when the lock file or Node.js changes.
oidc_dir="$root/tests/fixtures/oidc_provider"
if command -v npm >/dev/null 2>&1; then
    oidc_want="$({ cat "$oidc_dir/package-lock.json"; node --version; } | sha256sum | cut -d' ' -f1)"
    oidc_stamp="$oidc_dir/node_modules/.guahao-setup-stamp"
    if [[ ! -f "$oidc_stamp" || "$(cat "$oidc_stamp")" != "$oidc_want" ]]; then
        say "installing the test OpenID provider (npm ci in tests/fixtures/oidc_provider)"
        (cd "$oidc_dir" && npm ci --no-audit --no-fund --loglevel=error)
        printf '%s\n' "$oidc_want" >"$oidc_stamp"
    fi
else
    say "npm not found: the OpenID Connect sign-in tests will fail until Node.js is installed"
fi

want="$(
    {
        cat pyproject.toml requirements.lock
        "$venv/bin/python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    say ".venv is up to date"
    exit 0
fi

started=$SECONDS
rm -f "$stamp"
say "upgrading pip"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
say "installing guahao[dev] pinned by requirements.lock (a minute or two on a fresh tree)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c requirements.lock -e '.[dev]'
printf '%s\n' "$want" >"$stamp"
say "done in $((SECONDS - started))s"
