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
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from guahao.config import Settings
from guahao.hospital_connectors.his_inventory import HisHolds
from guahao.hospital_connectors.hub import ConnectorHub
from guahao.hospital_connectors.mllp import server_ssl_context
from guahao.hospital_connectors.registry import ConnectorRegistry
from guahao.platform.clock import Clock, SystemClock
from guahao.platform.embedded_redis import EmbeddedRedis
from guahao.platform.inventory.fact_versions import RedisFactVersions
from guahao.platform.inventory.redis_inventory import RedisInventory
from guahao.platform.jobs import SaqJobs
from guahao.platform.payments.sandbox import SandboxGateway
from guahao.platform.persistence.database import create_engine, session_factory, upgrade_async
from guahao.platform.persistence.outbox import OutboxDispatcher
from guahao.platform.personal_data import PersonalDataVault
from guahao.platform.ports import Notifier
from guahao.platform.rate_limiting import RequestLimiter
from guahao.platform.redis_pools import shared_client
from guahao.platform.refused_demand import RefusedDemandCounter
from guahao.platform.services.accounts import AccountService
from guahao.platform.services.add_on_units import AddOnUnits
from guahao.platform.services.audit import AuditLog
from guahao.platform.services.authority_figures import AuthorityFigures
from guahao.platform.services.availability_answers import AvailabilityAnswers
from guahao.platform.services.availability_feed import AvailabilityFeed
from guahao.platform.services.blacklist import BlacklistService, blacklist_rules_of
from guahao.platform.services.booking_service import BookingService
from guahao.platform.services.citizen_views import CitizenViews
from guahao.platform.services.department_policies import DepartmentPolicies
from guahao.platform.services.federated_identities import FederatedIdentities
from guahao.platform.services.filings import Filings
from guahao.platform.services.follow_ups import FollowUps
from guahao.platform.services.hospital_console import HospitalConsole
from guahao.platform.services.hospital_feed import HospitalFeed
from guahao.platform.services.inbox import Inbox
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.lottery import LotteryService
from guahao.platform.services.name_sealing import seal_patient_names
from guahao.platform.services.notifications import InboxNotifier
from guahao.platform.services.offer_notices import OfferNotifier
from guahao.platform.services.payment_reconciliation import PaymentReconciliation
from guahao.platform.services.pool_recovery import PoolRecovery
from guahao.platform.services.queries import QueryService
from guahao.platform.services.readiness import Readiness
from guahao.platform.services.rebooking_offers import RebookingOffers
from guahao.platform.services.registrations import RegistrationCodes
from guahao.platform.services.relation_codes import RelationCodes
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports, SlotFactsCache
from guahao.platform.services.sign_in_codes import ConsoleTextMessages, SignInCodes
from guahao.platform.services.sign_in_delays import SignInDelays
from guahao.platform.services.staff import STAFF_DELAYS_PREFIX, StaffService
from guahao.platform.services.supply import SupplyService
from guahao.platform.services.supply_demand import ROLLUP_SUBSCRIBER, SupplyDemandRollups
from guahao.platform.services.suspicion import SuspicionService, suspicion_rules_of
from guahao.platform.services.sweep import Sweep, SweepStep
from guahao.platform.services.unit_offers import UnitOffers
from guahao.platform.services.visit_reminders import InboxMessages, VisitReminders
from guahao.platform.services.waitlist import WaitlistService
from guahao.platform.shared_clock import RedisTime, SharedClock
from guahao.platform.sms_sandbox import SandboxSmsGateway, SmsNotifier
from guahao.platform.task_stops import cancel_and_wait
from guahao.search.nearby_supply import SearchNearbySupply
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
    readiness: Readiness
    jobs: SaqJobs
    gateway: SandboxGateway
    bookings: BookingService
    supply: SupplyService
    accounts: AccountService
    queries: QueryService
    inventory_sync: InventorySync
    pool_recovery: PoolRecovery
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
    rebooking: RebookingOffers
    reminders: VisitReminders
    text_messages: SandboxSmsGateway
    lottery: LotteryService
    add_on_units: AddOnUnits
    follow_ups: FollowUps
    filings: Filings
    rollups: SupplyDemandRollups
    figures: AuthorityFigures
    sign_in_codes: SignInCodes
    availability_feed: AvailabilityFeed
    citizen_views: CitizenViews
    inbox: Inbox
    sweep: Sweep
    """The periodic sweep's steps; its ``failures`` count failed rounds per step."""
    federated_identities: FederatedIdentities
    payment_reconciliation: PaymentReconciliation
    """Payment reconciliation (对账): a sweep step, a daily job and the authority's report."""
    hospital_console: HospitalConsole
    department_policies: DepartmentPolicies
    """Departments' own split and release policies (console), applied to unreleased sessions."""
    availability_answers: AvailabilityAnswers
    """A doctor's availability as encoded answers, per process, kept true by the pool's
    announcements (the API's read at a release)."""
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def job_functions(self) -> dict[str, Any]:
        """The job queue's functions: each is a safe-to-repeat step of a service."""

        async def expire_booking(booking_id: str) -> bool:
            return await self.bookings.expire(booking_id)

        async def expire_due_bookings() -> int:
            return await self.bookings.expire_all_due()

        async def process_refund(refund_no: str) -> bool:
            return await self.bookings.process_refund(refund_no)

        async def dispatch_outbox() -> int:
            return await self.dispatcher.dispatch_pending()

        async def sync_connectors() -> int:
            return len(await self.connectors.sync.pull_all())

        async def sweep() -> dict[str, Any]:
            report: dict[str, Any] = msgspec.to_builtins(await self.sweep.run())
            return report

        async def reconcile_payments() -> dict[str, Any]:
            # every order of the Beijing day just ended, compared with the gateway
            reconciliation = self.payment_reconciliation
            yesterday = reconciliation.business_day() - timedelta(days=1)
            day: dict[str, Any] = msgspec.to_builtins(await reconciliation.reconcile_day(yesterday))
            return day

        return {
            "expire_booking": expire_booking,
            "expire_due_bookings": expire_due_bookings,
            "process_refund": process_refund,
            "dispatch_outbox": dispatch_outbox,
            "sweep": sweep,
            "sync_connectors": sync_connectors,
            "reconcile_payments": reconcile_payments,
        }

    async def start_worker(self) -> None:
        worker = self.jobs.worker(
            self.job_functions(),
            sweeps={
                "dispatch_outbox": "* * * * * */2",
                "sweep": "* * * * * */15",
                "sync_connectors": f"*/{self.settings.connector_sync_minutes} * * * *",
                "reconcile_payments": "30 18 * * *",  # 02:30 Beijing time, daily
            },
            context={"platform": self},
        )
        self._tasks.append(asyncio.create_task(worker.start(), name="guahao-jobs"))


def _sweep_of(
    bookings: BookingService,
    supply: SupplyService,
    search: SearchService,
    lottery: LotteryService,
    waitlist: WaitlistService,
    rollups: SupplyDemandRollups,
    rebooking: RebookingOffers,
    reminders: VisitReminders,
    reconciliation: PaymentReconciliation,
    recovery: PoolRecovery,
) -> Sweep:
    """The sweep's steps in their order: the pool rebuilt first if Redis lost it, then
    refunds and expiries, so that the units they free are there for the waitlist at the end of
    the same round."""

    async def refunds() -> int:
        done = 0
        for refund_no in await bookings.pending_refunds():
            try:
                done += await bookings.process_refund(refund_no)
            except Exception:  # one refund the gateway refuses must not hold back the rest
                log.warning("refund %s not processed; retried next round", refund_no, exc_info=True)
        return done

    return Sweep(
        [
            SweepStep("pool_recovered", recovery.rebuild_if_lost),
            SweepStep("refunds", refunds),
            SweepStep("expired", bookings.expire_due),
            SweepStep("payments_reconciled", reconciliation.reconcile_due),
            SweepStep("cutoff_units", supply.run_cutoffs),
            SweepStep("no_shows", bookings.mark_due_no_shows),
            SweepStep("search_refreshed", search.refresh_due),
            SweepStep("lotteries_drawn", lottery.draw_due),
            SweepStep("waitlist_granted", waitlist.serve_due),
            SweepStep("rebooking_offers_ended", rebooking.end_due),
            SweepStep("reminders_sent", reminders.send_due),
            SweepStep("refusals_folded", rollups.fold_refusals),
            SweepStep("access_measured", rollups.measure_access_if_due),
        ]
    )


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
    check_outbox: bool = True,
) -> AsyncIterator[Platform]:
    """Start everything the settings describe; stop it all on exit.

    Refuses to start (``UnknownSubscriptionError``) when an outbox subscription has no cursor
    in a database with history; ``check_outbox=False`` is for the ``guahao outbox`` commands
    an operator uses to settle exactly that.
    """
    reference = settings.clock_reference or ("local" if clock is not None else "redis")
    clock = clock or SystemClock()
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start
    embedded: EmbeddedRedis | None = None
    redis_url = settings.redis_url
    if not redis_url:
        embedded = EmbeddedRedis(Path(settings.data_dir) / "redis", persist=True)
        # Started from this (the main) thread, not a worker thread: the server is tied to the
        # life of the thread that started it (see guahao/platform/child_processes.py).
        redis_url = embedded.start()
        log.info("started embedded redis at %s", redis_url)
    database_url = settings.resolved_database_url()
    engine = create_engine(
        database_url,
        pool_size=settings.database_pool_size,
        pool_timeout=settings.database_pool_timeout_seconds,
    )
    # A blocking pool: past REDIS_POOL_SIZE concurrent commands a request waits its turn
    # (as with the SQL pool) instead of failing with INVENTORY_UNAVAILABLE, which the plain
    # pool (max 100 in redis-py 8) did to most of a release surge. A redis+cluster:// URL
    # gives a Redis Cluster client instead (REDIS_POOL_SIZE connections per node).
    client: aioredis.Redis = shared_client(
        redis_url, max_connections=REDIS_POOL_SIZE, timeout=REDIS_POOL_TIMEOUT_SECONDS
    )
    jobs = SaqJobs(redis_url)
    limiter: RequestLimiter | None = None
    gateway_client = client  # unless the sandbox gateway has a Redis of its own
    calibration: asyncio.Task[None] | None = None
    platform_tasks: list[asyncio.Task[Any]] = []
    connectors: ConnectorHub | None = None
    search: SearchService | None = None
    ports: Ports | None = None
    inventory: RedisInventory | None = None
    availability_answers: AvailabilityAnswers | None = None
    try:
        if migrate:
            await upgrade_async(database_url)
        await jobs.connect()
        if reference == "redis":
            shared = SharedClock(clock, RedisTime(client))
            await shared.calibrate()  # before the first decision
            calibration = asyncio.create_task(shared.run(), name="guahao-clock")
            clock = shared
        if settings.payment_sandbox_redis_url:
            gateway_client = aioredis.Redis.from_url(settings.payment_sandbox_redis_url)
        gateway = SandboxGateway(
            gateway_client,
            base64.b64decode(settings.secret("payment_secret")),
            clock,
            settings.resolved_public_url(),
        )
        sessions = session_factory(engine)
        # Holds where the HIS owns its units: built first, so the ports carry it from the start.
        registry = ConnectorRegistry(sessions, clock)
        his_inventory = HisHolds(sessions, clock, registry)
        limiter = RequestLimiter(redis_url)
        # grants heard too: the availability answers drop a doctor's counts when a unit goes
        inventory = RedisInventory(client, follow_takes=True)
        # the sold-out view follows the pool's give-back channel for the platform's life
        inventory.follow_returns()
        ports = Ports(
            sessions=sessions,
            inventory=inventory,
            gateway=gateway,
            vault=PersonalDataVault(_data_key(settings)),
            clock=clock,
            jobs=jobs,
            limiter=limiter,
            his_inventory=his_inventory,
            refused_demand=RefusedDemandCounter(client),
            slot_facts=SlotFactsCache(versions=RedisFactVersions(client)),
        )
        if migrate:
            # Migration 0012's backfill: names still in the clear, sealed with the data key.
            await seal_patient_names(ports)
        sync = InventorySync(ports)
        dispatcher = OutboxDispatcher(ports.sessions, clock)
        # Cursor names are stored in the database: keep each one when its handler's code moves
        # (the first four are what the names derived from the code's layout used to be).
        inbox = InboxNotifier(ports)
        dispatcher.subscribe(
            "",
            inbox,
            name="guahao.platform.services.notifications.InboxNotifier:",
            batch=inbox.handle_batch,
            prompt=True,  # a citizen waits for it: first whenever rounds queue in a surge
        )
        search = search_service_for(settings, ports)
        if run_jobs is not False:
            # jieba's dictionary, loaded off the event loop before anything searches or
            # indexes (one-off commands, run_jobs=False, do neither: they skip the second)
            await asyncio.to_thread(search.analyzer.warm)
        # remembered search answers follow every process's index writes for the platform's life
        search.follow_changes(client)
        dispatcher.subscribe(
            "",
            search.indexer.handle,
            name="guahao.search.indexer.SearchIndexer.handle:",
            batch=search.indexer.handle_batch,
        )
        rules = RuleBook(ports)
        blacklist = BlacklistService(ports, blacklist_rules_of(rules))
        dispatcher.subscribe(
            "booking.",
            blacklist.recorder,
            # its name from when it lived in services/blacklist.py: the cursor stays
            name="guahao.platform.services.blacklist.StrikeRecorder:booking.",
        )
        suspicion = SuspicionService(ports, suspicion_rules_of(rules))
        dispatcher.subscribe(
            "booking.",
            suspicion.detector,
            name="guahao.platform.services.suspicion.SuspicionDetector:booking.",
            batch=suspicion.detector.handle_batch,
        )
        bookings = BookingService(ports, sync, rules)
        supply = SupplyService(ports, sync)
        offers = UnitOffers(ports, bookings.records, bookings.steps, rules)
        rebooking = RebookingOffers(ports, bookings.records, sync, offers, rules)
        bookings.hospital_actions.rebooking = rebooking
        waitlist = WaitlistService(ports, sync, offers, rules, rebooking)
        dispatcher.subscribe("booking.", waitlist.on_booking_event, name="waitlist:booking")
        dispatcher.subscribe("session.stopped", waitlist.on_session_event, name="waitlist:stop")
        dispatcher.subscribe(
            "waitlist.", waitlist.prepayments.on_wait_event, name="waitlist:prepayments"
        )
        dispatcher.subscribe("", OfferNotifier(ports), name="offer-notices", prompt=True)
        text_messages = SandboxSmsGateway(client, clock)
        reminder_notifier: Notifier = InboxMessages(ports)
        if settings.reminder_channel == "sms_sandbox":
            reminder_notifier = SmsNotifier(ports, text_messages, reminder_notifier)
        reminders = VisitReminders(
            ports,
            rules,
            reminder_notifier,
            cancel=lambda account_id, booking_id: bookings.cancel(
                account_id=account_id, booking_id=booking_id
            ),
            slot_facts=bookings.slot_facts,
            base_url=settings.resolved_public_url(),
        )
        dispatcher.subscribe(
            "booking.confirmed",
            reminders.on_booking_event,
            name="visit-reminders:schedule",
            batch=reminders.on_booking_events,
        )
        dispatcher.subscribe(
            "visit.reminder_due",
            reminders.on_reminder_event,
            name="visit-reminders:send",
            prompt=True,
        )
        filings = Filings(ports)
        feed = HospitalFeed(ports, supply, bookings.hospital_actions, sync, filings)
        dispatcher.subscribe(
            "booking.confirmed",
            filings.on_booking_confirmed,
            name="filings",
            batch=filings.on_bookings_confirmed,
        )
        rollups = SupplyDemandRollups(ports, client)
        # declared new: a database from before the rollups replays its history into them
        dispatcher.subscribe(
            "",
            rollups.on_event,
            name=ROLLUP_SUBSCRIBER,
            starts_at="beginning",
            batch=rollups.on_events,
        )
        connectors = ConnectorHub(
            ports,
            feed,
            dispatcher,
            registry,
            his_inventory,
            actions=bookings.hospital_actions,
            filings=filings,
        )
        # citizen pages: SMS sign-in codes, and live availability for every worker process
        availability_feed = AvailabilityFeed(client)
        dispatcher.subscribe(
            "",
            availability_feed.on_event,
            name="availability-feed",
            starts_at="now",
            batch=availability_feed.on_events,
        )
        sign_in_codes = SignInCodes(ports, client, ConsoleTextMessages(), rules)
        if check_outbox:
            await dispatcher.start()
        await his_inventory.load()
        lottery = LotteryService(ports, sync, offers, rules)
        reconciliation = PaymentReconciliation(ports, bookings.payments)
        pool_recovery = PoolRecovery(client, sync)
        queries = QueryService(ports)
        availability_answers = AvailabilityAnswers(queries, inventory.sold_out, ports.clock)
        platform = Platform(
            settings=settings,
            ports=ports,
            engine=engine,
            redis=client,
            redis_url=redis_url,
            readiness=Readiness(ports.sessions, client),
            jobs=jobs,
            gateway=gateway,
            bookings=bookings,
            supply=supply,
            accounts=AccountService(
                ports,
                rules,
                delays=SignInDelays(client, ports.clock),
                relation_codes=RelationCodes(ports, client, ConsoleTextMessages(), rules),
                registrations=RegistrationCodes(ports, client, ConsoleTextMessages(), rules),
            ),
            rules=rules,
            queries=queries,
            inventory_sync=sync,
            dispatcher=dispatcher,
            search=search,
            feed=feed,
            connectors=connectors,
            staff=StaffService(
                ports, delays=SignInDelays(client, ports.clock, prefix=STAFF_DELAYS_PREFIX)
            ),
            blacklist=blacklist,
            audit=AuditLog(ports),
            suspicion=suspicion,
            waitlist=waitlist,
            rebooking=rebooking,
            reminders=reminders,
            text_messages=text_messages,
            lottery=lottery,
            add_on_units=AddOnUnits(ports, rules),
            follow_ups=FollowUps(ports, rules),
            filings=filings,
            rollups=rollups,
            figures=AuthorityFigures(ports, SearchNearbySupply(search)),
            sign_in_codes=sign_in_codes,
            availability_feed=availability_feed,
            citizen_views=CitizenViews(ports),
            inbox=Inbox(ports),
            sweep=_sweep_of(
                bookings,
                supply,
                search,
                lottery,
                waitlist,
                rollups,
                rebooking,
                reminders,
                reconciliation,
                pool_recovery,
            ),
            pool_recovery=pool_recovery,
            federated_identities=FederatedIdentities(ports),
            payment_reconciliation=reconciliation,
            hospital_console=HospitalConsole(ports, filings),
            department_policies=DepartmentPolicies(ports, sync, rules),
            availability_answers=availability_answers,
        )
        if settings.hl7_mllp_port >= 0:
            await connectors.start_mllp(
                settings.hl7_mllp_host,
                settings.hl7_mllp_port,
                ssl_context=server_ssl_context(
                    settings.hl7_mllp_tls_certificate,
                    settings.hl7_mllp_tls_key,
                    settings.hl7_mllp_tls_client_ca,
                ),
            )
        platform_tasks = platform._tasks
        if settings.run_jobs if run_jobs is None else run_jobs:
            await platform.start_worker()
        yield platform
    finally:
        if availability_answers is not None:  # its refreshes read through the engine and Redis
            await availability_answers.close()
        if inventory is not None:
            await inventory.stop_following()
        if calibration is not None:
            await cancel_and_wait(calibration)
        if connectors is not None:
            await connectors.close()
        if ports is not None and ports.refused_demand is not None:
            with contextlib.suppress(Exception):
                await ports.refused_demand.close()
        with contextlib.suppress(Exception):
            await jobs.close()  # the worker's clean stop: running jobs get their grace period
        for task in platform_tasks:  # then its task is over for sure, whatever close did
            with contextlib.suppress(Exception):
                await cancel_and_wait(task)
        if limiter is not None:
            with contextlib.suppress(Exception):
                await limiter.close()
        if search is not None:
            await search.stop_following()
            await search.backend.close()
        if gateway_client is not client:
            await gateway_client.aclose()
        await client.aclose()
        await engine.dispose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def describe_database(url: str) -> str:
    """The database URL without its password, for logs and the CLI."""
    return make_url(url).render_as_string(hide_password=True)
