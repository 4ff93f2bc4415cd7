"""``guahao demo``'s hospitals on three connector kinds through real simulator processes."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import func, select

from guahao.hospital_connectors.demo import FHIR_HOSPITAL, HL7_HOSPITAL, PUSH_HOSPITAL, connect_demo
from guahao.platform.demo_region import build_demo_region
from guahao.platform.persistence.tables import HospitalRow, SessionRow


async def test_the_demo_puts_hospitals_on_fhir_hl7v2_and_push(sqlite_platform, tmp_path):
    platform = sqlite_platform
    region = build_demo_region()
    for spec in region.hospitals:
        if spec.code in (FHIR_HOSPITAL, HL7_HOSPITAL, PUSH_HOSPITAL):
            await platform.supply.register_hospital(spec)

    connected = await connect_demo(
        platform.connectors,
        platform.supply,
        platform.ports.clock,
        host=platform.settings.host,
        region=region,
        days=2,
        data_dir=tmp_path,
    )
    try:
        assert "(ok," in connected.lines[0]
        async with platform.ports.sessions() as session:
            pulled = await session.scalar(
                select(func.count())
                .select_from(SessionRow)
                .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
                .where(HospitalRow.code == FHIR_HOSPITAL)
            )
        expected = platform.supply.sessions_from_roster(
            next(h for h in region.hospitals if h.code == FHIR_HOSPITAL),
            [platform.ports.clock.now().date() + timedelta(days=i) for i in range(2)],
        )
        assert pulled == len(expected)  # the roster went through FHIR and came back whole
        kinds = {(c.hospital_code, c.kind) for c in await platform.connectors.registry.all()}
        assert {(FHIR_HOSPITAL, "fhir"), (HL7_HOSPITAL, "hl7v2"), (PUSH_HOSPITAL, "push")} <= kinds
        admin = connected.lines[1].split("admin API: ")[1].rstrip(")")
        async with httpx.AsyncClient(timeout=10) as http:
            ack = await http.post(
                f"{admin}/hl7",
                json={
                    "message": f"MSH|^~\\&|HIS|{HL7_HOSPITAL}|GUAHAO|REGION|20260302090000||"
                    "ADT^A04|D-1|P|2.5\rPV1|1|O\r"
                },
            )
        assert "MSA|AA|D-1" in ack.json()["ack"]  # the platform's listener answered its HIS
    finally:
        await connected.stop()
