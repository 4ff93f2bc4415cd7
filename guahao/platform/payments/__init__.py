"""Payment gateway adapters: the signed sandbox (embedded default) and its signing scheme.

The composition root picks an adapter for the ``PaymentGateway`` port; with no real provider
configured it is ``SandboxGateway``, which exercises the platform's whole payment flow (signed
notifications, expiry, closing, idempotent refunds) against a real Redis.
"""

from guahao.platform.payments.sandbox import (
    Channel,
    SandboxGateway,
    SandboxOrder,
    SandboxOrderStatus,
)

__all__ = ["Channel", "SandboxGateway", "SandboxOrder", "SandboxOrderStatus"]
