"""Search over HTTP: the endpoint a phone app calls, its filters, refusals and alternatives."""

from __future__ import annotations

import httpx

from guahao.bootstrap import Platform
from tests.fixtures.platforms import clinic, confirmed_booking, publish_clinic


async def test_search_by_initials_with_filters_and_facets(
    live_server: str, platform: Platform
) -> None:
    await publish_clinic(platform, clinic(units=1))
    await platform.search.reindex()
    async with httpx.AsyncClient(base_url=live_server) as client:
        response = await client.get(
            "/api/v1/search",
            params={"q": "ww", "kind": "doctor", "grade": "3A", "withinDays": 7},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == 1
        hit = body["hits"][0]
        assert hit["name"] == "王伟"
        assert hit["kind"] == "doctor"
        assert hit["departmentName"] == "心内科"
        assert hit["freeUnits7d"] == 8
        assert {"kind", "district", "grade", "catalogCode", "title", "category"} <= set(
            body["facets"]
        )
        assert body["backend"] == "embedded"

        symptom = (await client.get("/api/v1/search", params={"q": "胸闷"})).json()
        assert symptom["triage"][0]["departments"][0]["catalogCode"] == "03.04"
        assert symptom["hits"][0]["name"] == "心内科"


async def test_bad_filters_are_refused_with_a_code(live_server: str, platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=live_server) as client:
        for params in (
            {"grade": "5A"},
            {"title": "professor"},
            {"category": "vip"},
            {"withinDays": 0},
            {"withinDays": 99},
            {"catalogCode": "xx"},
            {"date": "2020-01-01"},
            {"pageSize": 500},
        ):
            response = await client.get("/api/v1/search", params=params)
            assert response.status_code == 422, (params, response.text)
            assert response.json()["code"] in {"SEARCH_FILTER_INVALID", "VALIDATION_FAILED"}, params
        too_long = await client.get("/api/v1/search", params={"q": "王" * 101})
        assert too_long.status_code == 422
        unknown = await client.get("/api/v1/doctors/no-such-doctor/alternatives")
        assert unknown.status_code == 404
        assert unknown.json()["code"] == "DOCTOR_NOT_FOUND"


async def test_alternatives_for_a_full_doctor(live_server: str, platform: Platform) -> None:
    slots = await publish_clinic(platform, clinic(units=1))
    await platform.search.reindex()
    for slot_id in slots:
        await confirmed_booking(platform, slot_id)
    await platform.dispatcher.dispatch_pending()
    async with httpx.AsyncClient(base_url=live_server) as client:
        found = (await client.get("/api/v1/search", params={"q": "王伟"})).json()
        doctor = found["hits"][0]
        assert doctor["freeUnits7d"] == 0
        response = await client.get(f"/api/v1/doctors/{doctor['id']}/alternatives")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["full"] is True
        assert body["alternatives"] == []  # the region has no other cardiology department
