"""FHIR Slot bundle ingest through the connector, beside parsing the same bundle with
fhir.resources (R4B pydantic models) alone, in one run.

The bundle is what the reference HIS publishes (Schedules, Practitioners, roles, departments
and ``--slots`` Slots). Rows:

- ``connector ingest``: bytes → msgspec decode of the Bundle (status value sets enforced) →
  the platform's checks (instants with a zone, start before end, references resolve) →
  grouping into sessions and segments → ``SessionSpec`` structs ready for the platform.
- ``fhir.resources parse``: ``Bundle.model_validate_json`` of the same bytes (R4B models):
  a parse and structural validation only, no mapping at all. The baseline.
- ``platform publish`` (with ``--publish``): the connector's sessions written to SQLite and to
  PostgreSQL (``--publish-on``; a throwaway cluster of ``infra/local_postgres.py``) and loaded
  into a Redis started here, through ``HospitalFeed``; reported separately because it is
  storage work, not parsing. Every slot must be in Redis afterwards. With ``--profile DIR``
  py-spy records the publishing process during the publish alone
  (``DIR/publish-<database>.folded``, raw stacks for ``bench/profile_summary.py``).

Each row is the median of ``--repeat`` runs; the ratio is baseline / connector.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guahao.hospital_connectors.fhir_mapping import (  # noqa: E402
    MappingDefaults,
    decode_resources,
    schedule_from_resources,
)
from guahao.hospital_connectors.simulator.store import slot_bundle  # noqa: E402


def connector_ingest(data: bytes) -> Any:
    resources, refusals = decode_resources(data)
    assert not refusals, refusals[:3]
    mapped = schedule_from_resources(resources, MappingDefaults(hospital_code="bench"))
    assert not mapped.refusals, mapped.refusals[:3]
    return mapped


def fhir_resources_parse(data: bytes) -> Any:
    from fhir.resources.R4B.bundle import Bundle

    return Bundle.model_validate_json(data)


def timed(fn: Any, data: bytes, repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = fn(data)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


PROFILE: dict[str, Path] = {}
"""``--profile DIR``: where py-spy writes each publish's stacks."""


def _spy(name: str) -> subprocess.Popen[bytes] | None:
    """py-spy on this very process (the publish runs here), until stopped with SIGINT."""
    if "dir" not in PROFILE:
        return None
    spy = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "py-spy"),
            "record",
            "--pid",
            str(os.getpid()),
            "--nonblocking",
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(PROFILE["dir"] / f"{name}.folded"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches before the clock starts
    return spy


def publish(mapped: Any, database: str) -> float:
    """Register the bench hospital and publish the mapped sessions on a fresh platform (the
    embedded SQLite, or a throwaway PostgreSQL cluster, each with a Redis it starts); returns
    the seconds the publish took."""
    import base64

    from guahao.config import Settings
    from infra import local_postgres

    key = base64.b64encode(b"b" * 32).decode()
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        database_url = ""
        if database == "postgresql":
            work.chmod(0o755)  # the cluster runs as the postgres user when we are root
            local_postgres.start(work / "pg")
            database_url = local_postgres.createdb(work / "pg", "guahao")
        try:
            settings = Settings(
                data_dir=str(work / "data"),
                database_url=database_url,
                secret_key=key,
                data_key=key,
                payment_secret=key,
                run_jobs=False,
            )
            return asyncio.run(_publish(mapped, settings, f"publish-{database}"))
        finally:
            if database == "postgresql":
                local_postgres.stop(work / "pg")


async def _publish(mapped: Any, settings: Any, name: str) -> float:
    from guahao.bootstrap import open_platform
    from guahao.platform.hospitals import HospitalGrade
    from guahao.platform.schedules import HospitalSpec

    async with open_platform(settings) as platform:
        await platform.supply.register_hospital(
            HospitalSpec(code="bench", name="基准医院", grade=HospitalGrade.GRADE_3A, district="-")
        )
        await platform.feed.upsert_staff("bench", mapped.departments, mapped.doctors)
        spy = _spy(name)
        started = time.perf_counter()
        report = await platform.feed.apply_sessions("bench", mapped.sessions)
        elapsed = time.perf_counter() - started
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        assert report.created == len(mapped.sessions)
        counts = await platform.ports.inventory.counts(await _slot_ids(platform), now_ms=0)
        segments = sum(len(s.segments) for s in mapped.sessions)
        assert len(counts) == segments, (len(counts), segments)
        return elapsed


async def _slot_ids(platform: Any) -> list[str]:
    """Every slot SQL holds: the publish must have loaded each into Redis."""
    from sqlalchemy import select

    from guahao.platform.persistence.tables import SlotRow

    async with platform.ports.sessions() as session:
        return list((await session.scalars(select(SlotRow.id))).all())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slots", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--publish", action="store_true", help="also publish into the platform")
    parser.add_argument(
        "--publish-on",
        nargs="+",
        choices=["sqlite", "postgresql"],
        default=["sqlite", "postgresql"],
        help="the databases --publish writes to, one fresh platform each",
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy the publishing process during each publish"
    )
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        PROFILE["dir"] = args.profile

    data = json.dumps(slot_bundle(args.slots), separators=(",", ":")).encode()
    print(f"bundle: {args.slots} slots, {len(data) / 1e6:.1f} MB", flush=True)
    ours, mapped = timed(connector_ingest, data, args.repeat)
    segments = sum(len(s.segments) for s in mapped.sessions)
    baseline, parsed = timed(fhir_resources_parse, data, args.repeat)
    assert len(parsed.entry) == len(json.loads(data)["entry"])
    rows = [
        ("connector ingest (msgspec + mapping)", ours, args.slots / ours),
        ("fhir.resources R4B parse (baseline)", baseline, args.slots / baseline),
    ]
    published: dict[str, float] = {}
    if args.publish:
        for database in args.publish_on:
            published[database] = publish(mapped, database)
            rows.append(
                (
                    f"platform publish ({database} + Redis)",
                    published[database],
                    args.slots / published[database],
                )
            )
    print(f"{'row':40} {'seconds':>9} {'slots/s':>12} {'sessions/s':>11}")
    for name, seconds, rate in rows:
        sessions_per_s = f"{len(mapped.sessions) / seconds:11,.0f}" if "publish" in name else ""
        print(f"{name:40} {seconds:9.3f} {rate:12,.0f} {sessions_per_s}")
    ratio = baseline / ours
    print(
        f"sessions {len(mapped.sessions)}, segments {segments}; "
        f"connector ingest is {ratio:.1f}x faster than the parse alone (target >= 5x)"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "fhir_ingest.json").write_text(
        json.dumps(
            {
                "slots": args.slots,
                "bytes": len(data),
                "repeat": args.repeat,
                "connector_ingest_s": ours,
                "fhir_resources_parse_s": baseline,
                "ratio": ratio,
                "platform_publish_s": published,
                "load_average": Path("/proc/loadavg").read_text().split()[:3],
                "sessions": len(mapped.sessions),
                "segments": segments,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
