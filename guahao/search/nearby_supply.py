"""The search service's alternatives, answered through the platform's ``NearbySupply`` port.

The authority's unmet-demand figure asks where else a short department's specialty has free
units; the alternatives logic (same catalog code, other hospitals, nearest district first)
already answers that for citizens, so the platform asks it through a port rather than
repeating it.
"""

from __future__ import annotations

from guahao.platform.errors import GuahaoError
from guahao.platform.services.authority_figures import NearbyOption
from guahao.search.service import SearchService

__all__ = ["SearchNearbySupply"]


class SearchNearbySupply:
    """``NearbySupply`` over ``SearchService.alternatives``."""

    def __init__(self, search: SearchService) -> None:
        self._search = search

    async def nearby(self, doctor_id: str, *, within_days: int, limit: int) -> list[NearbyOption]:
        """Departments elsewhere with free units; empty when search cannot say (a figure
        is still worth showing without its alternatives)."""
        try:
            found = await self._search.alternatives(doctor_id, within_days=within_days, limit=limit)
        except GuahaoError:
            return []
        return [
            NearbyOption(
                hospital_id=a.department.hospital_id,
                hospital_name=a.department.hospital_name,
                district=a.department.district,
                department_id=a.department.id,
                department_name=a.department.name,
                distance_km=a.distance_km,
                free_units_7d=a.department.free_units_7d,
                next_available_date=a.department.next_available_date,
            )
            for a in found.alternatives
        ]
