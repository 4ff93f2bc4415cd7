"""The authority's view of connector health over real HTTP: each connector's last sync, lag
and error rate, for authority staff only."""

from __future__ import annotations

from tests.e2e.test_authority_api import code_of, sign_in
from tests.fixtures.his_simulator import SIM_HOSPITAL, sim_hospital
from tests.fixtures.platforms import clinic, manual_clock


async def test_the_authority_sees_each_connectors_health(http, platform, his_simulator) -> None:
    his = await his_simulator(doctors=1, capacity=2)
    await platform.supply.register_hospital(sim_hospital())
    await platform.connectors.registry.register(SIM_HOSPITAL, "fhir", base_url=his.fhir)
    assert (await platform.connectors.sync.pull(SIM_HOSPITAL)).status == "ok"
    await his.admin("outage", {"down": True})
    manual_clock(platform).advance(minutes=5)
    assert (await platform.connectors.sync.pull(SIM_HOSPITAL)).status == "failed"
    auditor = await sign_in(http, platform, "auditor", "authority_auditor")

    answer = await auditor.get("/api/v1/authority/connectors/health")

    assert answer.status_code == 200, answer.text
    [health] = answer.json()
    assert (health["hospitalCode"], health["kind"], health["lastStatus"]) == (
        SIM_HOSPITAL,
        "fhir",
        "failed",
    )
    assert (health["runs"], health["failures"], health["errorRate"]) == (2, 1, 0.5)
    assert health["lagSeconds"] == 300.0
    assert "HIS_UNAVAILABLE" in health["lastError"]

    nurse = await sign_in(http, platform, "nurse", "hospital_staff", clinic(code="h9"))
    refused = await nurse.get("/api/v1/authority/connectors/health")
    assert (refused.status_code, code_of(refused)) == (403, "STAFF_ROLE_REQUIRED")
    anonymous = await http.get("/api/v1/authority/connectors/health")
    assert anonymous.status_code == 401
