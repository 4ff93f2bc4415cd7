"""The core: slot pool, holds, bookings, payments. Imports no other guahao subpackage."""
