"""The composition root: settings in, a running platform out.

Nothing connects at import time. ``open_platform`` starts (or connects to) Redis, opens the
database and brings its schema up to date, wires the adapters chosen by settings into the
services, starts the job worker if asked, and undoes all of it on exit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from guahao.config import Settings
from guahao.hospital_connectors.hub import ConnectorHub
from guahao.platform.clock import Clock, SystemClock
from guahao.platform.inventory.redis_inventory import RedisInventory
from guahao.platform.jobs import SaqJobs
from guahao.platform.outbox import OutboxDispatcher
from guahao.platform.payments.sandbox import SandboxGateway
from guahao.platform.persistence.database import create_engine, session_factory, upgrade_async
from guahao.platform.personal_data import PersonalDataVault
from guahao.platform.rate_limits import RequestLimiter
from guahao.platform.redis_server import EmbeddedRedis
from guahao.platform.services.accounts import AccountService
from guahao.platform.services.add_on_units import AddOnUnits
from guahao.platform.services.audit import AuditLog
from guahao.platform.services.blacklist import BlacklistService, blacklist_rules_of
from guahao.platform.services.booking_service import BookingService
from guahao.platform.services.federated_identities import FederatedIdentities
from guahao.platform.services.filings import Filings
from guahao.platform.services.follow_ups import FollowUps
from guahao.platform.services.hospital_feed import HospitalFeed
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.lottery import LotteryService
from guahao.platform.services.notifications import InboxNotifier
from guahao.platform.services.offer_notices import OfferNotifier
from guahao.platform.services.queries import QueryService
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.staff import StaffService
from guahao.platform.services.supply import SupplyService
from guahao.platform.services.suspicion import SuspicionService, suspicion_rules_of
from guahao.platform.services.unit_offers import UnitOffers
from guahao.platform.services.waitlist import WaitlistService
from guahao.search.service import SearchService, search_service_for

__all__ = ["Platform", "open_platform"]

log = logging.getLogger(__name__)

REDIS_POOL_SIZE = 100
"""Connections a process keeps to Redis; more concurrent commands queue for one."""

REDIS_POOL_TIMEOUT_SECONDS = 10.0
"""How long a command waits for a free connection before INVENTORY_UNAVAILABLE."""


@dataclass
class Platform:
    """The running platform's services and the resources behind them."""

    settings: Settings
    ports: Ports
    engine: AsyncEngine
    redis: aioredis.Redis
    redis_url: str
    jobs: SaqJobs
    gateway: SandboxGateway
    bookings: BookingService
    supply: SupplyService
    accounts: AccountService
    queries: QueryService
    inventory_sync: InventorySync
    dispatcher: OutboxDispatcher
    rules: RuleBook
    feed: HospitalFeed
    connectors: ConnectorHub
    search: SearchService
    staff: StaffService
    blacklist: BlacklistService
    audit: AuditLog
    suspicion: SuspicionService
    waitlist: WaitlistService
    lottery: LotteryService
    add_on_units: AddOnUnits
    follow_ups: FollowUps
    filings: Filings
    federated_identities: FederatedIdentities
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def job_functions(self) -> dict[str, Any]:
        """The job queue's functions: each is a safe-to-repeat step of a service."""

        async def expire_booking(booking_id: str) -> bool:
            return await self.bookings.expire(booking_id)

        async def process_refund(refund_no: str) -> bool:
            return await self.bookings.process_refund(refund_no)

        async def dispatch_outbox() -> int:
            return await self.dispatcher.dispatch_pending()

        async def sync_connectors() -> int:
            return len(await self.connectors.sync.pull_all())

        async def sweep() -> dict[str, int]:
            refunds = 0
            for refund_no in await self.bookings.pending_refunds():
                with contextlib.suppress(Exception):
                    refunds += await self.bookings.process_refund(refund_no)
            return {
                "expired": await self.bookings.expire_due(),
                "cutoff_units": await self.supply.run_cutoffs(),
                "no_shows": await self.bookings.mark_due_no_shows(),
                "refunds": refunds,
                "search_refreshed": await self.search.refresh_due(),
                "lotteries_drawn": await self.lottery.draw_due(),
                "waitlist_granted": await self.waitlist.serve_due(),
            }

        return {
            "expire_booking": expire_booking,
            "process_refund": process_refund,
            "dispatch_outbox": dispatch_outbox,
            "sweep": sweep,
            "sync_connectors": sync_connectors,
        }

    async def start_worker(self) -> None:
        worker = self.jobs.worker(
            self.job_functions(),
            sweeps={
                "dispatch_outbox": "* * * * * */2",
                "sweep": "* * * * * */15",
                "sync_connectors": f"*/{self.settings.connector_sync_minutes} * * * *",
            },
            context={"platform": self},
        )
        self._tasks.append(asyncio.create_task(worker.start(), name="guahao-jobs"))


def _data_key(settings: Settings) -> str:
    key = settings.secret("data_key")
    if len(base64.b64decode(key)) != 32:
        raise ValueError("GUAHAO_DATA_KEY must be 32 bytes, base64-encoded")
    return key


@contextlib.asynccontextmanager
async def open_platform(
    settings: Settings,
    *,
    clock: Clock | None = None,
    migrate: bool = True,
    run_jobs: bool | None = None,
) -> AsyncIterator[Platform]:
    """Start everything the settings describe; stop it all on exit."""
    clock = clock or SystemClock()
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start
    embedded: EmbeddedRedis | None = None
    redis_url = settings.redis_url
    if not redis_url:
        embedded = EmbeddedRedis(Path(settings.data_dir) / "redis", persist=True)
        # Started from this (the main) thread, not a worker thread: the server is tied to the
        # life of the thread that started it (see redis_server._die_with_parent).
        redis_url = embedded.start()
        log.info("started embedded redis at %s", redis_url)
    database_url = settings.resolved_database_url()
    engine = create_engine(database_url)
    # A blocking pool: past REDIS_POOL_SIZE concurrent commands a request waits its turn
    # (as with the SQL pool) instead of failing with INVENTORY_UNAVAILABLE, which the plain
    # pool (max 100 in redis-py 8) did to most of a release surge.
    client: aioredis.Redis = aioredis.Redis.from_pool(
        aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=REDIS_POOL_SIZE, timeout=REDIS_POOL_TIMEOUT_SECONDS
        )
    )
    jobs = SaqJobs(redis_url)
    connectors: ConnectorHub | None = None
    search: SearchService | None = None
    try:
        if migrate:
            await upgrade_async(database_url)
        await jobs.connect()
        gateway = SandboxGateway(
            client,
            base64.b64decode(settings.secret("payment_secret")),
            clock,
            settings.resolved_public_url(),
        )
        ports = Ports(
            sessions=session_factory(engine),
            inventory=RedisInventory(client),
            gateway=gateway,
            vault=PersonalDataVault(_data_key(settings)),
            clock=clock,
            jobs=jobs,
            limiter=RequestLimiter(redis_url),
        )
        sync = InventorySync(ports)
        dispatcher = OutboxDispatcher(ports.sessions, clock)
        dispatcher.subscribe("", InboxNotifier(ports))
        search = search_service_for(settings, ports)
        dispatcher.subscribe("", search.indexer.handle)
        rules = RuleBook(ports)
        blacklist = BlacklistService(ports, blacklist_rules_of(rules))
        dispatcher.subscribe("booking.", blacklist.recorder)
        suspicion = SuspicionService(ports, suspicion_rules_of(rules))
        dispatcher.subscribe("booking.", suspicion.detector)
        bookings = BookingService(ports, sync, rules)
        supply = SupplyService(ports, sync)
        feed = HospitalFeed(ports, supply, bookings, sync)
        offers = UnitOffers(ports, bookings, rules)
        waitlist = WaitlistService(ports, bookings, offers, rules)
        dispatcher.subscribe("booking.", waitlist.on_booking_event, name="waitlist:booking")
        dispatcher.subscribe("session.stopped", waitlist.on_session_event, name="waitlist:stop")
        dispatcher.subscribe("", OfferNotifier(ports), name="offer-notices")
        filings = Filings(ports)
        feed.use_filings(filings)
        dispatcher.subscribe("booking.confirmed", filings.on_booking_confirmed, name="filings")
        connectors = ConnectorHub(ports, feed, dispatcher, actions=bookings, filings=filings)
        ports.his_inventory = connectors.his_inventory  # holds where the HIS owns units
        await connectors.his_inventory.load()
        platform = Platform(
            settings=settings,
            ports=ports,
            engine=engine,
            redis=client,
            redis_url=redis_url,
            jobs=jobs,
            gateway=gateway,
            bookings=bookings,
            supply=supply,
            accounts=AccountService(ports, rules),
            rules=rules,
            queries=QueryService(ports),
            inventory_sync=sync,
            dispatcher=dispatcher,
            search=search,
            feed=feed,
            connectors=connectors,
            staff=StaffService(ports),
            blacklist=blacklist,
            audit=AuditLog(ports),
            suspicion=suspicion,
            waitlist=waitlist,
            lottery=LotteryService(ports, bookings, offers, rules),
            add_on_units=AddOnUnits(ports, rules),
            follow_ups=FollowUps(ports, rules),
            filings=filings,
            federated_identities=FederatedIdentities(ports),
        )
        if settings.hl7_mllp_port >= 0:
            await connectors.start_mllp(settings.host, settings.hl7_mllp_port)
        if settings.run_jobs if run_jobs is None else run_jobs:
            await platform.start_worker()
        yield platform
    finally:
        if connectors is not None:
            await connectors.close()
        with contextlib.suppress(Exception):
            await jobs.close()
        if search is not None:
            await search.backend.close()
        await client.aclose()
        await engine.dispose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def describe_database(url: str) -> str:
    """The database URL without its password, for logs and the CLI."""
    return make_url(url).render_as_string(hide_password=True)
