"""Adapters between hospital systems (HIS) and the platform's service API."""
