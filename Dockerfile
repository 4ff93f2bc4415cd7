# The platform's image: one image for the web workers, the job worker and the migrations
# (`guahao serve`, `guahao db upgrade`), plus the reference HIS (`guahao his-simulator`).
#
#   docker build -t guahao:latest .
#
# Two stages: the build stage installs the Python package pinned by requirements.lock and the
# web assets from the npm registry (package-lock.json); the run stage gets the virtualenv
# only (no compiler, no Node.js), runs as an unprivileged user and keeps nothing in the image
# it writes (the data directory is a volume; production uses PostgreSQL, Redis, Meilisearch).

FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
COPY pyproject.toml requirements.lock README.md ./
COPY guahao ./guahao
COPY infra/web_assets.txt infra/build_web_bundles.sh ./infra/
COPY infra/web_bundles ./infra/web_bundles
# The assets the app serves, from node_modules into the package (the list setup.sh copies),
# and the bundles built from npm packages (the console's reduced ECharts, gzipped once).
RUN mkdir -p guahao/web/static/vendor \
    && grep -v '^#' infra/web_assets.txt | xargs -I{} cp node_modules/{} guahao/web/static/vendor/ \
    && bash infra/build_web_bundles.sh
RUN python -m venv /opt/guahao \
    && /opt/guahao/bin/pip install --no-cache-dir -c requirements.lock .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /var/lib/guahao --create-home guahao
COPY --from=build /opt/guahao /opt/guahao
ENV PATH=/opt/guahao/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GUAHAO_HOST=0.0.0.0 \
    GUAHAO_PORT=8000 \
    GUAHAO_DATA_DIR=/var/lib/guahao
USER 10001
WORKDIR /var/lib/guahao
EXPOSE 8000 2575
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
ENTRYPOINT ["guahao"]
CMD ["serve"]
