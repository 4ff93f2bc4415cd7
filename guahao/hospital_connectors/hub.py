"""The connectors of a running platform: registry, scheduled pulls, the HL7 v2 listener and
the HIS notifier, built once by the composition root."""

from __future__ import annotations

import ssl

from guahao.hospital_connectors.filing_requests import FilingSender
from guahao.hospital_connectors.his_inventory import HisHoldEvents, HisHolds
from guahao.hospital_connectors.hl7_inbox import Hl7Inbox
from guahao.hospital_connectors.mllp import MllpServer
from guahao.hospital_connectors.registry import ConnectorRegistry
from guahao.hospital_connectors.sync import FhirSync, HisNotifier
from guahao.platform.persistence.outbox import OutboxDispatcher
from guahao.platform.services.filings import Filings
from guahao.platform.services.hospital_actions import HospitalActions
from guahao.platform.services.hospital_feed import HospitalFeed
from guahao.platform.services.runtime import Ports

__all__ = ["HIS_NOTIFIER", "ConnectorHub"]

HIS_NOTIFIER = "hospital_connectors.his_notifier"
"""The HIS notifier's outbox subscription (its cursor's name in the database)."""


class ConnectorHub:
    def __init__(
        self,
        ports: Ports,
        feed: HospitalFeed,
        dispatcher: OutboxDispatcher,
        registry: ConnectorRegistry,
        his_inventory: HisHolds,
        actions: HospitalActions | None = None,
        filings: Filings | None = None,
    ) -> None:
        """``registry`` and ``his_inventory`` come built: the hold path reaches the HIS
        through ``ports.his_inventory``, which exists before the services and this hub."""
        self.feed = feed
        self.actions = actions
        self.registry = registry
        self.sync = FhirSync(feed, self.registry, ports.clock)
        self.inbox = Hl7Inbox(feed, self.registry, actions)
        self.notifier = HisNotifier(feed, self.registry, ports.clock)
        dispatcher.subscribe(
            "booking.", self.notifier, name=HIS_NOTIFIER, batch=self.notifier.handle_batch
        )
        self.filing_sender: FilingSender | None = None
        if filings is not None:
            self.filing_sender = FilingSender(ports, filings, self.registry)
            dispatcher.subscribe(
                "patient.filing_requested",
                self.filing_sender,
                name="hospital_connectors.filing_sender",
                # mode A: the HIS notifier files the patient with the confirmed booking; the
                # request that follows must find the person filed, not file them again
                after=[HIS_NOTIFIER],
            )
        self.his_inventory = his_inventory
        self.registry.on_change.append(self.his_inventory.forget)
        dispatcher.subscribe(
            "booking.",
            HisHoldEvents(self.his_inventory, ports),
            name="hospital_connectors.his_holds",
        )
        self.mllp: MllpServer | None = None

    async def start_mllp(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> int:
        """Listen for HL7 v2 over MLLP (over TLS with ``ssl_context``); returns the port."""
        self.mllp = MllpServer(self.inbox.handle, host, port, ssl_context=ssl_context)
        return await self.mllp.start()

    async def close(self) -> None:
        if self.mllp is not None:
            await self.mllp.stop()
        for client in self.notifier.mllp_clients.values():
            await client.close()
