"""The authority's figures over real HTTP: who may read what, and the CSV and XLSX files."""

from __future__ import annotations

import csv
import io

import httpx
from openpyxl import load_workbook

from guahao.bootstrap import Platform
from tests.e2e.test_authority_api import sign_in
from tests.integration.test_supply_demand_figures import build_region, chaoyang

PERIOD = {"from": "2026-03-01", "to": "2026-03-07"}


async def test_staff_read_figures_within_their_scope(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    desk = await sign_in(http, platform, "desk", "hospital_staff", chaoyang())
    admin = await sign_in(http, platform, "admin", "authority_admin")
    auditor = await sign_in(http, platform, "auditor", "authority_auditor")
    await build_region(platform)

    region = await admin.get("/api/v1/authority/figures/supply-demand", params=PERIOD)
    assert region.status_code == 200, region.text
    assert {line["district"] for line in region.json()} == {"朝阳区", "海淀区"}
    haidian = next(line for line in region.json() if line["district"] == "海淀区")
    assert (haidian["bookingRate"], haidian["unmetDemand"], haidian["waitlistLength"]) == (
        1.0,
        3,
        1,
    )
    ranked = await auditor.get("/api/v1/authority/figures/rankings", params={"month": "2026-03"})
    assert [r["hospitalName"] for r in ranked.json()] == ["海淀医院", "朝阳医院"]
    own = await desk.get("/api/v1/authority/figures/supply-demand", params=PERIOD)
    assert [line["district"] for line in own.json()] == ["朝阳区"]
    haidian_id = None
    for line in (await admin.get("/api/v1/authority/figures/compliance", params=PERIOD)).json():
        if line["hospitalName"] == "海淀医院":
            haidian_id = line["hospitalId"]
    assert haidian_id is not None
    other = await desk.get(
        "/api/v1/authority/figures/unmet-demand", params={**PERIOD, "hospitalId": haidian_id}
    )
    assert other.status_code == 403
    assert other.json()["code"] == "HOSPITAL_SCOPE_DENIED"
    reversed_period = await admin.get(
        "/api/v1/authority/figures/access", params={"from": "2026-03-07", "to": "2026-03-01"}
    )
    assert reversed_period.status_code == 422
    assert reversed_period.json()["code"] == "FIGURES_RANGE_INVALID"
    anonymous = await http.get("/api/v1/authority/figures/supply-demand", params=PERIOD)
    assert anonymous.status_code == 401


async def test_every_figure_exports_as_csv_and_xlsx(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    admin = await sign_in(http, platform, "admin", "authority_admin")
    await build_region(platform)
    await platform.rollups.measure_access()
    for figure in ("supply-demand", "access", "compliance", "unmet-demand", "rankings"):
        params = {"month": "2026-03"} if figure == "rankings" else PERIOD
        lines = (await admin.get(f"/api/v1/authority/figures/{figure}", params=params)).json()
        assert lines, figure
        exported = await admin.get(
            f"/api/v1/authority/figures/{figure}/export", params={**params, "format": "csv"}
        )
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"].startswith("text/csv")
        assert "attachment" in exported.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
        assert len(rows) == len(lines)
        first_key = next(iter(lines[0]))
        assert rows[0][first_key] == str(lines[0][first_key])
        workbook = await admin.get(
            f"/api/v1/authority/figures/{figure}/export", params={**params, "format": "xlsx"}
        )
        assert workbook.status_code == 200
        sheet = load_workbook(io.BytesIO(workbook.content), read_only=True).active
        assert sheet is not None
        table = [list(r) for r in sheet.iter_rows(values_only=True)]
        assert len(table) == len(lines) + 1
        assert table[0][0] == first_key
    compliance = await admin.get(
        "/api/v1/authority/figures/compliance/export", params={**PERIOD, "format": "csv"}
    )
    row = next(
        r
        for r in csv.DictReader(io.StringIO(compliance.content.decode("utf-8-sig")))
        if r["hospitalName"] == "海淀医院"
    )
    assert (row["midnight_releasesPassed"], row["segment_minutesPassed"]) == ("False", "True")
    unknown = await admin.get(
        "/api/v1/authority/figures/access/export", params={**PERIOD, "format": "pdf"}
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "EXPORT_FORMAT_UNSUPPORTED"
