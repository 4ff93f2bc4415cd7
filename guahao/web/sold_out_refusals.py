"""The answer to a hold on a slot known to be sold out, written once per slot.

At a release most requests are holds on slots already gone, refused from the worker's memory
(``BookingService.refuse_known_sold_out``), and one refusal of a slot differs from the next
only by its new ``hold_id``. Built per request (the error, the exception handler's body, its
encoding) it was a tenth of the refusal's CPU with the exception that carried it
(bench/profiles/refuse-1-*). ``SoldOutRefusals`` writes each slot's answer once with
``refused`` (the one writer of the refusals made before the framework, so the bytes stay the
exception handler's) around a marker, and each answer is the two halves around a new id.
"""

from __future__ import annotations

from guahao.platform.services.booking_service import sold_out_refusal
from guahao.web.front_grants import GrantAnswer, refused

__all__ = ["SoldOutRefusals"]

_MARK = "hold-id-of-this-refusal"
"""Where the hold id goes in a slot's written answer (found exactly once, or not used)."""


class SoldOutRefusals:
    """Each slot's ``SLOT_SOLD_OUT`` answer, written once (at most ``kept`` slots remembered:
    past that all are forgotten and written again as the crowd asks)."""

    def __init__(self, kept: int = 10_000) -> None:
        self._kept = kept
        self._written: dict[str, tuple[int, bytes, bytes, list[tuple[bytes, bytes]], str]] = {}

    def answer(self, slot_id: str, hold_id: str) -> GrantAnswer:
        """``refused(sold_out_refusal(slot_id, hold_id))``, from the slot's written answer.

        >>> refusals = SoldOutRefusals()
        >>> refusals.answer("s1", "h1") == refused(sold_out_refusal("s1", "h1"))
        True
        """
        written = self._written.get(slot_id)
        if written is None:
            status, body, headers, code = refused(sold_out_refusal(slot_id, _MARK))
            mark = _MARK.encode()
            if body.count(mark) != 1:  # a slot id holding the marker: written each time
                return refused(sold_out_refusal(slot_id, hold_id))
            before, _mark, after = body.partition(mark)
            if len(self._written) >= self._kept:
                self._written.clear()
            written = self._written[slot_id] = (status, before, after, headers, code or "")
        status, before, after, headers, code = written
        return status, before + hold_id.encode() + after, headers.copy(), code
