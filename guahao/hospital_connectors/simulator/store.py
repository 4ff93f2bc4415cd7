"""The reference HIS's own store: FHIR resources as JSON, kept in one file.

It is generated from a seed (departments, doctors, and slots for some days) the way a real
hospital system would publish them, using the conventions the platform documents
(``urn:guahao:department-catalog``, ``urn:guahao:doctor-title``, slot capacity and fee
extensions). Every change stamps ``meta.lastUpdated`` so incremental pulls see it.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from guahao.hospital_connectors.fhir_resources import CANONICAL_SYSTEMS
from guahao.platform.schedules import HospitalSpec, SessionSpec

__all__ = ["HisStore", "slot_bundle", "store_from_platform"]

DEPARTMENTS = [
    ("xnk", "心血管内科", "03.04"),
    ("hxk", "呼吸内科", "03.01"),
    ("pfk", "皮肤科", "13"),
    ("ek", "儿科", "07"),
]
DOCTORS = ["王伟", "李娜", "张敏", "刘洋", "陈静", "杨帆", "赵磊", "黄丽"]
TITLES = ["chief", "associate_chief", "attending", "attending"]
PERIODS = [(time(8, 0), time(12, 0)), (time(13, 30), time(17, 30))]


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(now: datetime) -> dict[str, str]:
    # milliseconds: two changes within one second must stay apart for incremental pulls
    return {
        "lastUpdated": now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    }


def _slots_for(
    schedule_id: str, day: date, zone: ZoneInfo, now: datetime, capacity: int, minutes: int = 30
) -> list[dict[str, Any]]:
    out = []
    for begin, finish in PERIODS:
        start = datetime.combine(day, begin, zone)
        end_of_period = datetime.combine(day, finish, zone)
        while start + timedelta(minutes=minutes) <= end_of_period:
            end = start + timedelta(minutes=minutes)
            out.append(
                {
                    "resourceType": "Slot",
                    "id": f"{schedule_id}-{start.astimezone(UTC):%Y%m%d%H%M}",
                    "meta": _meta(now),
                    "schedule": {"reference": f"Schedule/{schedule_id}"},
                    "status": "free",
                    "start": _instant(start),
                    "end": _instant(end),
                    "extension": [{"url": CANONICAL_SYSTEMS["capacity"], "valueInteger": capacity}],
                }
            )
            start = end
    return out


def slot_bundle(count: int, *, start: date = date(2026, 3, 2)) -> dict[str, Any]:
    """A searchset Bundle of ``count`` Slots (and their Schedules, Practitioners, roles and
    departments) in the reference HIS's conventions: the benchmark's input."""
    zone = ZoneInfo("Asia/Shanghai")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    entries: list[dict[str, Any]] = []
    slots: list[dict[str, Any]] = []
    per_day = 16  # two periods of 4 hours in 30-minute segments
    doctors = max(1, count // (per_day * 30) + 1)
    store = HisStore.generate("bench", doctors=doctors, days=0, start=start, now=now)
    entries += [
        {"resource": r}
        for kind in ("HealthcareService", "Practitioner", "PractitionerRole", "Schedule")
        for r in store.resources[kind].values()
    ]
    day = 0
    while len(slots) < count:
        for schedule_id in store.resources["Schedule"]:
            slots += _slots_for(schedule_id, start + timedelta(days=day), zone, now, 3)
            if len(slots) >= count:
                break
        day += 1
    entries += [{"resource": s} for s in slots[:count]]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


class HisStore:
    """Resources by type and id, saved to ``path`` (if any) after each change."""

    def __init__(self, hospital_code: str, path: Path | None = None) -> None:
        self.hospital_code = hospital_code
        self.path = path
        self.zone = ZoneInfo("Asia/Shanghai")
        self.resources: dict[str, dict[str, dict[str, Any]]] = {
            k: {}
            for k in (
                "HealthcareService",
                "Practitioner",
                "PractitionerRole",
                "Schedule",
                "Slot",
                "Appointment",
                "Patient",
            )
        }
        self.received_hl7: list[str] = []
        self._lock = threading.Lock()

    @classmethod
    def generate(
        cls,
        hospital_code: str,
        *,
        doctors: int = 4,
        days: int = 7,
        start: date,
        now: datetime,
        capacity: int = 3,
        path: Path | None = None,
    ) -> HisStore:
        store = cls(hospital_code, path)
        r = store.resources
        for code, name, catalog in DEPARTMENTS:
            r["HealthcareService"][code] = {
                "resourceType": "HealthcareService",
                "id": code,
                "meta": _meta(now),
                "name": name,
                "type": [
                    {"coding": [{"system": CANONICAL_SYSTEMS["department"], "code": catalog}]}
                ],
            }
        for i in range(doctors):
            doctor = f"d{i + 1:03d}"
            department = DEPARTMENTS[i % len(DEPARTMENTS)][0]
            name = DOCTORS[i % len(DOCTORS)]
            r["Practitioner"][doctor] = {
                "resourceType": "Practitioner",
                "id": doctor,
                "meta": _meta(now),
                "name": [{"family": name[0], "given": [name[1:]]}],
                "gender": "male" if i % 2 == 0 else "female",
            }
            r["PractitionerRole"][f"role-{doctor}"] = {
                "resourceType": "PractitionerRole",
                "id": f"role-{doctor}",
                "meta": _meta(now),
                "practitioner": {"reference": f"Practitioner/{doctor}"},
                "healthcareService": [{"reference": f"HealthcareService/{department}"}],
                "code": [
                    {"coding": [{"system": CANONICAL_SYSTEMS["title"], "code": TITLES[i % 4]}]}
                ],
            }
            category = "specialist" if TITLES[i % 4] in ("chief", "associate_chief") else "general"
            r["Schedule"][f"sch-{doctor}"] = {
                "resourceType": "Schedule",
                "id": f"sch-{doctor}",
                "meta": _meta(now),
                "active": True,
                "actor": [{"reference": f"Practitioner/{doctor}"}],
                "serviceType": [
                    {"coding": [{"system": CANONICAL_SYSTEMS["category"], "code": category}]}
                ],
                "extension": [
                    {
                        "url": CANONICAL_SYSTEMS["fee"],
                        "valueInteger": 3000 if category == "specialist" else 1000,
                    }
                ],
            }
            for d in range(days):
                for slot in _slots_for(
                    f"sch-{doctor}", start + timedelta(days=d), store.zone, now, capacity
                ):
                    r["Slot"][slot["id"]] = slot
        store.save()
        return store

    @classmethod
    def load(cls, path: Path) -> HisStore:
        data = json.loads(path.read_text())
        store = cls(data["hospital_code"], path)
        store.resources.update(data["resources"])
        store.received_hl7 = data.get("received_hl7", [])
        return store

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            draft = self.path.with_suffix(".tmp")
            draft.write_text(
                json.dumps(
                    {
                        "hospital_code": self.hospital_code,
                        "resources": self.resources,
                        "received_hl7": self.received_hl7,
                    },
                    ensure_ascii=False,
                )
            )
            os.replace(draft, self.path)

    def touch(self, resource: dict[str, Any], now: datetime) -> None:
        resource["meta"] = _meta(now)

    def search(
        self, kind: str, *, updated_after: datetime | None = None, **params: str
    ) -> list[dict[str, Any]]:
        found = []
        for resource in self.resources.get(kind, {}).values():
            if updated_after is not None:
                stamp = datetime.fromisoformat(
                    resource["meta"]["lastUpdated"].replace("Z", "+00:00")
                )
                if stamp < updated_after:
                    continue
            if (
                "schedule" in params
                and resource.get("schedule", {}).get("reference") != params["schedule"]
            ):
                continue
            if "identifier" in params:
                wanted = params["identifier"]
                if not any(
                    f"{i.get('system', '')}|{i.get('value', '')}" == wanted
                    for i in resource.get("identifier", [])
                ):
                    continue
            found.append(resource)
        return sorted(found, key=lambda r: r["id"])

    def schedules_of(self, doctor: str) -> set[str]:
        """References of the schedules whose actor is the doctor."""
        return {
            f"Schedule/{schedule['id']}"
            for schedule in self.resources["Schedule"].values()
            if any(a.get("reference") == f"Practitioner/{doctor}" for a in schedule["actor"])
        }

    def session_slots(self, doctor: str, day: date, period: str) -> list[dict[str, Any]]:
        """The slots of one doctor's half-day in the hospital's time."""
        out = []
        schedules = self.schedules_of(doctor)
        for slot in self.resources["Slot"].values():
            if slot["schedule"]["reference"] not in schedules:
                continue
            local = datetime.fromisoformat(slot["start"].replace("Z", "+00:00")).astimezone(
                self.zone
            )
            slot_period = (
                "morning" if local.hour < 12 else "afternoon" if local.hour < 18 else "evening"
            )
            if local.date() == day and slot_period == period:
                out.append(slot)
        return sorted(out, key=lambda s: s["start"])


def store_from_platform(
    spec: HospitalSpec, sessions: list[SessionSpec], *, now: datetime, path: Path | None = None
) -> HisStore:
    """A HIS store publishing ``spec``'s departments, doctors and ``sessions`` as FHIR, the
    way the demo puts a platform hospital behind the reference HIS."""
    store = HisStore(spec.code, path)
    r = store.resources
    for dep in spec.departments:
        r["HealthcareService"][dep.code] = {
            "resourceType": "HealthcareService",
            "id": dep.code,
            "meta": _meta(now),
            "name": dep.name,
            "type": [
                {"coding": [{"system": CANONICAL_SYSTEMS["department"], "code": dep.catalog_code}]}
            ],
        }
    for doc in spec.doctors:
        r["Practitioner"][doc.code] = {
            "resourceType": "Practitioner",
            "id": doc.code,
            "meta": _meta(now),
            "name": [{"text": doc.name}],
            "gender": {"M": "male", "F": "female"}.get(doc.sex, "unknown"),
        }
        r["PractitionerRole"][f"role-{doc.code}"] = {
            "resourceType": "PractitionerRole",
            "id": f"role-{doc.code}",
            "meta": _meta(now),
            "practitioner": {"reference": f"Practitioner/{doc.code}"},
            "healthcareService": [{"reference": f"HealthcareService/{doc.department_code}"}],
            "code": [{"coding": [{"system": CANONICAL_SYSTEMS["title"], "code": doc.title.value}]}],
        }
    for session in sessions:
        schedule_id = f"sch-{session.doctor_code}-{session.category.value}-{session.fee_cents}"
        r["Schedule"].setdefault(
            schedule_id,
            {
                "resourceType": "Schedule",
                "id": schedule_id,
                "meta": _meta(now),
                "active": True,
                "actor": [{"reference": f"Practitioner/{session.doctor_code}"}],
                "serviceType": [
                    {
                        "coding": [
                            {
                                "system": CANONICAL_SYSTEMS["category"],
                                "code": session.category.value,
                            }
                        ]
                    }
                ],
                "extension": [{"url": CANONICAL_SYSTEMS["fee"], "valueInteger": session.fee_cents}],
            },
        )
        for segment in session.segments:
            slot_id = f"{schedule_id}-{segment.start.astimezone(UTC):%Y%m%d%H%M}"
            r["Slot"][slot_id] = {
                "resourceType": "Slot",
                "id": slot_id,
                "meta": _meta(now),
                "schedule": {"reference": f"Schedule/{schedule_id}"},
                "status": "free",
                "start": _instant(segment.start),
                "end": _instant(segment.end),
                "extension": [
                    {"url": CANONICAL_SYSTEMS["capacity"], "valueInteger": segment.capacity}
                ],
            }
    store.save()
    return store
