"""The third next available appointment (第三个可预约号), measured once a day, against days
counted by hand.

Two hospitals of one specialty, Wednesday morning sessions of eight 30-minute segments of
4 units (32 units, all online), each released 7 days ahead at 08:00. 朝阳医院 (h1) has
sessions on ``SESSION_DAY`` (Wed 4 March) and the Wednesday after (11 March); 海淀医院 (h2)
only on ``SESSION_DAY``.

- Mon 2 March 09:00: the 4 March session is open, the 11th not yet released (4 March 08:00):
  both hospitals' third free unit is on the 4th: 2 days.
- Wed 4 March 10:05: the segments from 10:30 are still ahead (3 × 4 units) and the 11th has
  just been released: the third free unit is today, 0 days, for both.
- Thu 5 March 09:00: h1's next units are on the 11th: 6 days; h2 has none: no measure.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

from guahao.bootstrap import Platform
from guahao.platform.hospitals import PaymentMode
from guahao.platform.services.authority_figures import FigureScope
from tests.fixtures.platforms import SESSION_DAY, at_local, clinic, manual_clock
from tests.fixtures.staff import staff_of


async def publish(platform: Platform, code: str, district: str, days: int) -> None:
    spec = msgspec.structs.replace(
        clinic(PaymentMode.PAY_AT_HOSPITAL, units=4, code=code), district=district
    )
    await platform.supply.register_hospital(spec)
    first = SESSION_DAY - timedelta(days=2)
    await platform.supply.publish_sessions(
        platform.supply.sessions_from_roster(spec, [first + timedelta(days=i) for i in range(days)])
    )


async def test_third_next_available_day_by_day(platform: Platform) -> None:
    await publish(platform, "h1", "朝阳区", days=14)
    await publish(platform, "h2", "海淀区", days=7)
    clock = manual_clock(platform)
    moments = [
        at_local(SESSION_DAY - timedelta(days=2), 9),
        at_local(SESSION_DAY, 10, 5),
        at_local(SESSION_DAY + timedelta(days=1), 9),
    ]
    for moment in moments:
        clock.set(moment)
        assert await platform.rollups.measure_access_if_due() == 2
        assert await platform.rollups.measure_access_if_due() == 0  # once a day
    admin = await staff_of(platform, "admin", "authority_admin", None)
    scope = FigureScope(
        date_from=SESSION_DAY - timedelta(days=7),
        date_to=SESSION_DAY + timedelta(days=7),
        catalog_code="03.04",
    )
    trend = {
        (f.district, f.measured_on.day): (f.third_next_days, f.free_units)
        for f in await platform.figures.access(admin, scope)
    }
    assert trend == {
        ("朝阳区", 2): (2, 32),
        ("朝阳区", 4): (0, 3 * 4 + 32),
        ("朝阳区", 5): (6, 32),
        ("海淀区", 2): (2, 32),
        ("海淀区", 4): (0, 3 * 4),
        ("海淀区", 5): (None, 0),
    }
    desk = await staff_of(platform, "desk", "hospital_staff", "h2")
    assert {f.district for f in await platform.figures.access(desk, scope)} == {"海淀区"}
