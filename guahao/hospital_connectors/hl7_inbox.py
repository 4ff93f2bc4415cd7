"""The platform's HL7 v2 inbox: what the MLLP listener does with each message.

The sending facility (MSH-4) names the hospital (its registered ``hl7v2`` connector), and the
connection must be one that hospital's sender binding admits (``mllp_senders``): MSH-4 alone is
only what the sender wrote. A message from a connection that is not bound to the facility it
names is refused before anything else, so it can neither change that hospital's data nor spend
its control ids in the replay log, which is kept per hospital. A message
is answered once: its control id (MSH-10) is logged with the answer, and a repeat gets the same
answer without a second effect. AA: applied (or informational); AR: refused for good, with the
stable code in ERR (do not send again); AE: the platform could not process it now (send again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from guahao.hospital_connectors import hl7_mapping
from guahao.hospital_connectors.failures import MappingError
from guahao.hospital_connectors.mllp import Peer
from guahao.hospital_connectors.mllp_senders import binding_of
from guahao.hospital_connectors.notices import apply_notice
from guahao.hospital_connectors.registry import ConnectorRegistry
from guahao.platform.errors import GuahaoError, UnavailableError
from guahao.platform.ids import new_id
from guahao.platform.services.hospital_actions import HospitalActions
from guahao.platform.services.hospital_feed import HospitalFeed

__all__ = ["Hl7Inbox"]

log = logging.getLogger(__name__)

CHANNEL = "hl7v2"


class Hl7Inbox:
    def __init__(
        self,
        feed: HospitalFeed,
        registry: ConnectorRegistry,
        actions: HospitalActions | None = None,
    ) -> None:
        self._feed = feed
        self._registry = registry
        self._actions = actions

    async def handle(self, raw: bytes, peer: Peer | None = None) -> str:
        """The ACK (or NAK) for one framed message received on ``peer``'s connection."""
        peer = peer or Peer("?")
        reply_id = new_id()[:20]
        try:  # parsed once, off the event loop: its cost grows with what the sender sends
            message = await asyncio.to_thread(hl7_mapping.parse, raw)
        except MappingError as exc:
            return hl7_mapping.ack_message(
                None, "AR", exc.reason, control_id=reply_id, error_code=exc.code
            )
        facility = hl7_mapping.field_of(message, "MSH", 4)
        connector = await self._registry.by_facility(facility)
        if connector is None:
            return hl7_mapping.ack_message(
                message,
                "AR",
                f"sending facility {facility!r} is not a registered hospital",
                control_id=reply_id,
                error_code="CONNECTOR_NOT_FOUND",
            )
        if not _admits(connector.config, peer):
            log.warning(
                "HL7 from %s (certificate %s) claims facility %s, which is not bound to it; "
                "refused without effect",
                peer.host,
                peer.certificate_sha256[:16] or "none",
                facility,
            )
            return hl7_mapping.ack_message(
                message,
                "AR",
                "this connection may not send for that facility",
                control_id=reply_id,
                error_code="HL7_SENDER_NOT_AUTHORISED",
            )
        control_id = hl7_mapping.field_of(message, "MSH", 10)
        earlier = await self._registry.answered(connector.hospital_id, CHANNEL, control_id)
        if earlier is not None:
            code, _, error_code = earlier.outcome.partition(":")
            return hl7_mapping.ack_message(
                message, code, earlier.detail, control_id=reply_id, error_code=error_code
            )
        try:
            reading = hl7_mapping.read_message(message, timezone=connector.timezone)
            done = [
                await apply_notice(self._feed, connector.hospital_code, notice, self._actions)
                for notice in reading.notices
            ]
            outcome, text = "AA", "; ".join(done) or reading.note or "accepted"
        except MappingError as exc:
            outcome, text = f"AR:{exc.code}", f"{exc.path}: {exc.reason}"
        except UnavailableError as exc:
            log.warning("HL7 %s from %s: %s; asked to resend", control_id, facility, exc)
            return hl7_mapping.ack_message(
                message, "AE", exc.message_en, control_id=reply_id, error_code=exc.code
            )
        except GuahaoError as exc:
            outcome, text = f"AR:{exc.code}", f"{exc.message_en} {exc.detail}"
        except Exception as exc:  # anything unforeseen: not logged, so a resend is processed
            log.exception("HL7 %s from %s failed", control_id, facility)
            return hl7_mapping.ack_message(message, "AE", type(exc).__name__, control_id=reply_id)
        await self._registry.remember(
            connector.hospital_id,
            CHANNEL,
            control_id,
            hl7_mapping.message_kind(message),
            outcome,
            text,
        )
        code, _, error_code = outcome.partition(":")
        return hl7_mapping.ack_message(
            message, code, text, control_id=reply_id, error_code=error_code
        )


def _admits(config: Mapping[str, Any], peer: Peer) -> bool:
    try:
        return binding_of(config).admits(peer)
    except GuahaoError:  # a malformed binding recorded by hand admits no one
        return False
