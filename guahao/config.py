"""Settings: one typed object, read once by the composition root.

Values come from an optional TOML file (``GUAHAO_CONFIG``) and then from environment variables
``GUAHAO_<FIELD>`` (upper case), which win. Nothing here connects to anything.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

__all__ = ["Settings", "load_settings"]


SigningSecret = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(|.{32,})$",
        description="empty (generated) or at least 32 characters",
    ),
]
"""A key that signs tokens or callbacks: a short one can be guessed offline from a single signed
value, so one under 32 characters is refused at start rather than used (a generated key is 32
random bytes, 44 characters of base64)."""


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything an operator can set. Each field: ``GUAHAO_<NAME>`` in the environment."""

    data_dir: str = ".guahao"
    """Where the embedded default keeps its SQLite file, Redis files and keys."""

    database_url: str = ""
    """SQLAlchemy async URL of the record of truth; empty means SQLite in ``data_dir``.
    Production: ``postgresql+asyncpg://user:password@host:5432/guahao``."""

    database_pool_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 40
    """PostgreSQL connections each process keeps, and never more (SQLite ignores it). The
    database must allow workers × this (``max_connections``), or a PgBouncer in front must pool
    them: 24 workers at 40 are 960 connections (docs/operations.md, the capacity plan)."""

    database_pool_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 30.0
    """How long a request waits for a connection when every one of its process's is busy,
    before it is answered 503 ``SERVICE_UNAVAILABLE`` with Retry-After. A crowd larger than the
    pool queues meanwhile; lower it to turn citizens away sooner (their page retries) rather
    than keep them waiting, and keep it below the load balancer's request timeout, or the
    balancer answers first and the request still runs behind it."""

    redis_url: str = ""
    """Redis for the hot slot pool, holds, rate limits and jobs; empty means the app starts a
    private ``redis-server`` in ``data_dir`` and stops it on exit. Production:
    ``redis://host:6379/0`` (or ``rediss://`` with TLS); a Redis Cluster:
    ``redis+cluster://host:6379`` (``rediss+cluster://``), naming any one master."""

    clock_reference: Literal["", "redis", "local"] = ""
    """Whose time decides when holds run out, releases open, sweeps cut off and payment
    orders lapse. ``redis``: this host's clock corrected to Redis's ``TIME``, measured every
    10 s, so workers on hosts whose clocks disagree still decide alike. ``local``: the host's
    clock as it is (a single process). Empty: ``redis`` for the system clock, ``local`` for a
    clock handed to ``open_platform`` (tests walking through time)."""

    payment_sandbox_redis_url: str = ""
    """Where the sandbox payment gateway keeps its orders; empty means in ``redis_url``.
    The sandbox stands for another company's system, which a loss of the platform's Redis
    never touches: give it a Redis of its own (persisted, e.g. ``appendonly yes``) for fault
    drills and production-shaped runs, or reconciliation after a Redis loss meets a gateway
    that forgot its orders, which no real gateway does."""

    host: str = "127.0.0.1"
    """Interface the HTTP server binds."""

    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    """HTTP port (0 picks a free one)."""

    http_keep_alive_seconds: Annotated[int, msgspec.Meta(ge=1)] = 75
    """How long the server keeps an idle keep-alive connection open. It must exceed the idle
    timeout of every proxy and client in front (ingress-nginx ``upstream-keepalive-timeout``,
    60 s; cloud load balancers, 60 s), so only they close idle connections: a server closing
    one just as the proxy sends on it resets that request (uvicorn's default was 5 s)."""

    http_backlog: Annotated[int, msgspec.Meta(ge=16)] = 4096
    """Connections the kernel queues for the server while every worker is busy or one is
    being replaced (capped by ``net.core.somaxconn``); a release crowd opens thousands at
    once, and a full queue drops new ones."""

    gc_young_threshold: Annotated[int, msgspec.Meta(ge=700)] = 20_000
    """Objects a serving process may gain before the garbage collector looks at its youngest
    ones (``gc.set_threshold``'s first figure; Python's default is 700). At 700 the young
    collections caught each loop turn's requests in flight and promoted them, which set off a
    full collection of 13-100 ms every second at a release (guahao/collector_settings.py)."""

    http_accept_balance: Literal["reuseport", "shared"] = "reuseport"
    """How ``guahao serve --workers N`` spreads new connections over its workers:
    ``reuseport``, a ``SO_REUSEPORT`` socket per worker, evenly by the kernel (a crowd's
    connections no longer pile onto whichever worker woke first: the two-worker tail at
    1 000 connections); ``shared``, one socket, so a stalled or dead worker's share goes to the
    others at once (guahao/worker_processes.py)."""

    http_graceful_shutdown_seconds: Annotated[int, msgspec.Meta(ge=1)] = 20
    """How long a stopping server lets requests in flight finish before cancelling what is
    left (live-availability streams never finish on their own). Keep it below the
    orchestrator's grace (Kubernetes ``terminationGracePeriodSeconds`` 30 s less the 5 s
    ``preStop``), or the kill comes first and cuts every request still in flight."""

    public_url: str = ""
    """The URL citizens reach the platform at (payment pages link back to it); empty means
    ``http://host:port``."""

    secret_key: SigningSecret = ""
    """Signs access tokens (at least 32 characters). Empty: a random key is generated once and
    kept in ``data_dir``."""

    data_key: str = ""
    """Base64 32-byte key that encrypts personal data at rest (AES-256-GCM) and keys its lookup
    hashes. Empty: generated once and kept in ``data_dir`` (embedded default only)."""

    payment_secret: SigningSecret = ""
    """Shared secret of the payment gateway's signed callbacks (sandbox: generated; at least 32
    characters)."""

    payment_gateway: Literal["sandbox"] = "sandbox"
    """Which payment provider adapter; ``sandbox`` is the embedded default and, so far, the
    only one: any other name is refused rather than silently served by the sandbox (whose
    cashier page confirms bookings without money)."""

    reminder_channel: Literal["inbox", "sms_sandbox"] = "inbox"
    """How visit reminders reach patients besides the inbox: ``inbox`` only, or also by SMS
    through the sandbox SMS gateway, which records what it would send (Redis,
    ``sandbox-sms:sent``) instead of sending it."""

    token_minutes: Annotated[int, msgspec.Meta(ge=1)] = 120
    """Lifetime of a citizen's access token."""

    metrics_token: SigningSecret = ""
    """Bearer token Prometheus must send to ``GET /metrics`` (``Authorization: Bearer …``, at
    least 32 characters): the exposition names routes, refusal counts and hospital codes, which
    are not for the public. Empty: one is generated once and kept in
    ``data_dir/keys/metrics_token``, where the scraper's configuration can read it."""

    run_jobs: bool = True
    """Whether this process also runs the job worker (outbox dispatch, expiries, no-shows)."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    """Python logging level of the ``guahao`` command's processes (INFO also shows every
    background job)."""

    search_backend: Literal["embedded", "meilisearch"] = "embedded"
    """Search engine: ``embedded`` (SQLite FTS5 in its own file, no server; one process) or
    ``meilisearch`` (production; every worker shares it)."""

    search_index_dir: str = ""
    """Directory of the embedded search index; empty means ``data_dir/search``, and
    ``:memory:`` keeps it in memory (tests). It is not the record of truth: delete it and
    ``guahao search reindex`` rebuilds it from the platform."""

    meili_url: str = ""
    """Meilisearch URL (``search_backend = "meilisearch"``), e.g. ``http://search:7700``."""

    meili_api_key: str = ""
    """Meilisearch API key with document and settings rights on ``meili_index``."""

    meili_index: str = "guahao"
    """Name of the live Meilisearch index; a reindex fills ``<name>_next`` and swaps."""

    search_districts_file: str = ""
    """JSON file of the region's district positions (``{"districts": {"朝阳区": [x, y]}}``,
    kilometres) for "nearest district first"; empty means the demo region's."""

    hl7_mllp_port: Annotated[int, msgspec.Meta(ge=-1, le=65535)] = -1
    """Port of the HL7 v2 MLLP listener hospitals send SIU/ADT messages to (on
    ``hl7_mllp_host``); -1 means no listener, 0 any free port. The usual MLLP port is 2575."""

    hl7_mllp_host: str = "127.0.0.1"
    """Address of the MLLP listener: its own, on the private link to the hospitals, never the
    public HTTP address (``host``). Each hospital's connector names the source addresses or
    client certificates allowed to speak for it (docs/connectors.md)."""

    hl7_mllp_tls_certificate: str = ""
    """PEM certificate chain of the MLLP listener; with ``hl7_mllp_tls_key`` it speaks MLLP
    over TLS. Empty: plain MLLP (bind connectors by source address then)."""

    hl7_mllp_tls_key: str = ""
    """PEM private key of ``hl7_mllp_tls_certificate``."""

    hl7_mllp_tls_client_ca: str = ""
    """PEM bundle of the CAs that issue hospitals' client certificates; when set, a client
    certificate is required and checked against it (and pinned per hospital by fingerprint)."""

    connector_sync_minutes: Annotated[int, msgspec.Meta(ge=1, le=59)] = 5
    """How often the job worker pulls every FHIR hospital's schedules (incrementally)."""

    cookie_secure: Literal["auto", "always", "never"] = "auto"
    """Whether the citizen pages' cookies carry ``Secure`` (sent over https only): ``auto``
    when ``public_url`` is https, ``never`` for a local http demo, ``always`` behind a proxy
    that ends TLS in front of an http ``public_url``."""

    citizen_session_hours: Annotated[int, msgspec.Meta(ge=1, le=720)] = 12
    """How long a citizen stays signed in to the pages without using them."""

    oidc_issuer: str = ""
    """Issuer URL of the region's OpenID Connect identity provider (its
    ``/.well-known/openid-configuration`` is read from there); empty means no sign-in through
    an identity provider."""

    oidc_client_id: str = ""
    """This platform's client id at the identity provider (required with ``oidc_issuer``)."""

    oidc_client_secret: str = ""
    """Client secret (``client_secret_basic``); ignored when ``oidc_private_key_file`` is set."""

    oidc_private_key_file: str = ""
    """PEM file of an RSA private key: the client authenticates with ``private_key_jwt``
    (RS256) instead of a secret; the provider holds the public key."""

    oidc_scopes: str = "openid profile phone"
    """Scopes requested at sign-in; ``openid`` and ``phone`` are needed to link an identity to
    an account by its verified phone number."""

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{Path(self.data_dir).resolve()}/guahao.db"

    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def secure_cookies(self) -> bool:
        """Whether cookies carry ``Secure`` (see ``cookie_secure``)."""
        if self.cookie_secure == "auto":
            return self.resolved_public_url().startswith("https://")
        return self.cookie_secure == "always"

    def oidc_redirect_uri(self) -> str:
        """Where the provider sends the browser back (register it at the provider)."""
        return f"{self.resolved_public_url()}/auth/oidc/callback"

    def oidc_post_logout_redirect_uri(self) -> str:
        """Where the provider sends the browser after logout (register it too)."""
        return f"{self.resolved_public_url()}/"

    def secret(self, name: str) -> str:
        """A secret field, or one generated once and kept in ``data_dir`` (0600)."""
        value: str = getattr(self, name)
        if value:
            return value
        path = Path(self.data_dir) / "keys" / name
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        import base64

        value = base64.b64encode(secrets.token_bytes(32)).decode()
        # Written in full to a private temporary file, then linked into place (atomic, and
        # refused if it exists): a process starting at the same moment never reads a
        # half-written (empty) key, and the loser of the race uses the winner's key.
        draft = path.with_name(f".{name}.{secrets.token_hex(8)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(value)
            try:
                os.link(draft, path)
            except FileExistsError:
                return path.read_text().strip()
        finally:
            draft.unlink()
        return value


_FIELDS = frozenset(Settings.__struct_fields__)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from the TOML file named by ``GUAHAO_CONFIG``, the environment, then overrides.

    >>> load_settings({"GUAHAO_PORT": "9000", "GUAHAO_RUN_JOBS": "false"}).port
    9000
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    config_file = env.get("GUAHAO_CONFIG")
    if config_file:
        with open(config_file, "rb") as handle:
            raw.update(tomllib.load(handle))
    for key, value in env.items():
        if key.startswith("GUAHAO_") and key != "GUAHAO_CONFIG":
            name = key.removeprefix("GUAHAO_").lower()
            if name in _FIELDS:
                raw[name] = value
    raw.update(overrides)
    return msgspec.convert(raw, Settings, strict=False)
