#!/usr/bin/env bash
# Bundles the web assets the app builds from npm packages (not copies of a package's own
# files, which infra/web_assets.txt lists): today the console's ECharts, only the parts it
# draws with (infra/web_bundles/echarts_console.mjs), minified by esbuild (pinned in
# package-lock.json), and gzipped once here so the app never compresses it per request.
# Run from the repository root after `npm ci`; infra/setup.sh and the Dockerfile call it.
set -euo pipefail
vendor="guahao/web/static/vendor"
out="$vendor/echarts-console.min.js"
entry="infra/web_bundles/echarts_console.mjs"
mkdir -p "$vendor"
if [[ ! -f "$out.gz" || "$entry" -nt "$out.gz" || node_modules/echarts/package.json -nt "$out.gz" \
      || "$0" -nt "$out.gz" ]]; then
    node_modules/.bin/esbuild "$entry" --bundle --minify --format=iife --target=es2018 \
        --legal-comments=none --log-level=warning --outfile="$out"
    gzip -9 -n -c "$out" >"$out.gz.tmp"
    mv "$out.gz.tmp" "$out.gz"
fi
