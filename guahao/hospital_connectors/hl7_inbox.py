"""The platform's HL7 v2 inbox: what the MLLP listener does with each message.

The sending facility (MSH-4) names the hospital (its registered ``hl7v2`` connector). A message
is answered once: its control id (MSH-10) is logged with the answer, and a repeat gets the same
answer without a second effect. AA: applied (or informational); AR: refused for good, with the
stable code in ERR (do not send again); AE: the platform could not process it now (send again).
"""

from __future__ import annotations

import logging

from guahao.hospital_connectors import hl7_mapping
from guahao.hospital_connectors.failures import MappingError
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

    async def handle(self, raw: bytes, peer: tuple[str, int] = ("?", 0)) -> str:
        """The ACK (or NAK) for one framed message."""
        reply_id = new_id()[:20]
        try:
            header = hl7_mapping.read(raw, timezone="UTC").header
        except MappingError as exc:
            if exc.code == "HL7_MESSAGE_UNSUPPORTED":
                header = None
            else:
                return hl7_mapping.ack(
                    raw, "AR", exc.reason, control_id=reply_id, error_code=exc.code
                )
        facility = hl7_mapping.field_of(hl7_mapping.parse(raw), "MSH", 4)
        connector = await self._registry.by_facility(facility)
        if connector is None:
            return hl7_mapping.ack(
                raw,
                "AR",
                f"sending facility {facility!r} is not a registered hospital",
                control_id=reply_id,
                error_code="CONNECTOR_NOT_FOUND",
            )
        control_id = hl7_mapping.field_of(hl7_mapping.parse(raw), "MSH", 10)
        earlier = await self._registry.answered(connector.hospital_id, CHANNEL, control_id)
        if earlier is not None:
            code, _, error_code = earlier.outcome.partition(":")
            return hl7_mapping.ack(
                raw, code, earlier.detail, control_id=reply_id, error_code=error_code
            )
        try:
            reading = hl7_mapping.read(raw, timezone=connector.timezone)
            done = [
                await apply_notice(self._feed, connector.hospital_code, notice, self._actions)
                for notice in reading.notices
            ]
            outcome, text = "AA", "; ".join(done) or reading.note or "accepted"
        except MappingError as exc:
            outcome, text = f"AR:{exc.code}", f"{exc.path}: {exc.reason}"
        except UnavailableError as exc:
            log.warning("HL7 %s from %s: %s; asked to resend", control_id, facility, exc)
            return hl7_mapping.ack(
                raw, "AE", exc.message_en, control_id=reply_id, error_code=exc.code
            )
        except GuahaoError as exc:
            outcome, text = f"AR:{exc.code}", f"{exc.message_en} {exc.detail}"
        except Exception as exc:  # anything unforeseen: not logged, so a resend is processed
            log.exception("HL7 %s from %s failed", control_id, facility)
            return hl7_mapping.ack(raw, "AE", type(exc).__name__, control_id=reply_id)
        kind = header.message_type + "^" + header.trigger if header else "?"
        await self._registry.remember(
            connector.hospital_id, CHANNEL, control_id, kind, outcome, text
        )
        code, _, error_code = outcome.partition(":")
        return hl7_mapping.ack(raw, code, text, control_id=reply_id, error_code=error_code)
