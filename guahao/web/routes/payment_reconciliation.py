"""The health authority's payment reconciliation (对账) report: one business day's orders,
money taken and refunded, and every difference found with the gateway and what was done.

Reading it asks nothing of the gateway (the daily job and the sweep do the comparing), so an
auditor may open it as often as they like.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from guahao.platform.services.payment_reconciliation import (
    PaymentReconciliation,
    ReconciliationReport,
)
from guahao.platform.services.staff import StaffRole
from guahao.web.staff_auth import require_staff

__all__ = ["PaymentReconciliationController"]

READER = require_staff(StaffRole.AUTHORITY_ADMIN, StaffRole.AUTHORITY_AUDITOR)


class PaymentReconciliationController(Controller):
    path = "/api/v1/authority/payments"
    tags = ["authority"]  # noqa: RUF012

    @get("/reconciliation", operation_id="paymentReconciliationReport", guards=[READER])
    async def report(
        self,
        payment_reconciliation: NamedDependency[PaymentReconciliation],
        day: Annotated[date | None, QueryParameter(name="day")] = None,
    ) -> ReconciliationReport:
        """The day's report (Beijing time; today when no ``day`` is given)."""
        return await payment_reconciliation.report(day or payment_reconciliation.business_day())
