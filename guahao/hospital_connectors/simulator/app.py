"""The reference HIS: FHIR R4 REST over its store, HL7 v2 over MLLP both ways, and an admin
API through which a test (or a vendor trying the platform) makes the hospital do things.

FHIR: ``GET /fhir/metadata``; ``GET /fhir/{type}`` searches with ``_count`` paging (Bundle
``next`` links), ``_lastUpdated=gt…``, ``schedule=`` and ``identifier=``; ``POST
/fhir/Appointment`` (conditional on ``If-None-Exist``) and ``PUT /fhir/Appointment?identifier=``
take the platform's bookings and mark the slot busy or free again. IHE ITI Scheduling:
``Appointment/$find`` proposes free slots, ``$hold`` holds one (idempotent by the client's
identifier; a pending hold takes a unit as a booking does, so a full slot is refused 409) and
``$book`` books a hold (also the client's own hold named by its identifier).

Admin: ``POST /admin/outage`` (``{"down": true}``: every FHIR call answers 503, and the MLLP
listener refuses connections), ``POST /admin/stop`` (停诊: the session's slots become
``busy-unavailable``, and with ``"via": "hl7v2"`` an SIU^S15 STOP goes to the platform over
MLLP), ``POST /admin/check-in`` (ADT^A04 to the platform), ``POST /admin/capacity``,
``GET /admin/appointments``, ``GET /admin/hl7``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry
from litestar import Litestar, Request, Response, get, post, put
from litestar.datastructures import State

from guahao.hospital_connectors import hl7_mapping
from guahao.hospital_connectors.fhir_resources import CANONICAL_SYSTEMS
from guahao.hospital_connectors.mllp import MllpClient, MllpServer, Peer
from guahao.hospital_connectors.simulator.store import HisStore

__all__ = ["Simulator"]

FHIR_JSON = "application/fhir+json"
IHE = "https://profiles.ihe.net/ITI/Scheduling/OperationDefinition"


def _issuer(assertion: str) -> str:
    """The (not yet verified) issuer of a JWT, to pick the key that must verify it."""
    payload = assertion.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["iss"])


def _outcome(status: int, text: str) -> Response[Any]:
    return Response(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
        },
        status_code=status,
        media_type=FHIR_JSON,
    )


class Simulator:
    """The HIS process: its store, its HTTP app and its MLLP ends."""

    def __init__(
        self,
        store: HisStore,
        *,
        platform_mllp: tuple[str, int] | None = None,
        client_keys: dict[str, dict[str, Any]] | None = None,
        mllp_listen: tuple[str, int] = ("127.0.0.1", 0),
    ) -> None:
        """``mllp_listen``: where its own MLLP listener binds (port 0: any free port)."""
        self.store = store
        self.client_keys = client_keys or {}
        """client_id -> public JWK; when any is set, FHIR calls need a SMART access token."""
        self.tokens: set[str] = set()
        self.down = False
        self.down_after: int | None = None
        self.facility = store.hospital_code
        self.platform_mllp = platform_mllp
        self.mllp_server = MllpServer(self._receive_hl7, *mllp_listen)
        self.base_url = ""
        """Known once its HTTP server has bound its port (``serve`` sets it then)."""

    def authorized(self, request: Request[Any, Any, Any]) -> bool:
        if not self.client_keys:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token in self.tokens

    def refuses(self) -> bool:
        """Whether this FHIR call meets an outage (``down_after`` calls from now, or now)."""
        if self.down_after is not None:
            if self.down_after <= 0:
                self.down, self.down_after = True, None
            else:
                self.down_after -= 1
        return self.down

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def _receive_hl7(self, raw: bytes, _peer: Peer) -> str:
        if self.down:
            return hl7_mapping.ack(raw, "AE", "HIS down", control_id=secrets.token_hex(8))
        self.store.received_hl7.append(raw.decode("utf-8", errors="replace"))
        self.store.save()
        return hl7_mapping.ack(raw, "AA", "received", control_id=secrets.token_hex(8))

    async def send_hl7(self, message: str) -> str:
        if self.platform_mllp is None:
            raise RuntimeError("no platform MLLP address (--platform-mllp)")
        client = MllpClient(*self.platform_mllp, timeout=10)
        try:
            return await client.send(message)
        finally:
            await client.close()

    def app(self) -> Litestar:
        sim = self

        @get("/fhir/metadata", media_type=FHIR_JSON)
        async def metadata() -> Response[Any]:
            if sim.refuses():
                return _outcome(503, "HIS down")
            types = ["HealthcareService", "Practitioner", "PractitionerRole", "Schedule", "Slot"]
            return Response(
                {
                    "resourceType": "CapabilityStatement",
                    "status": "active",
                    "kind": "instance",
                    "fhirVersion": "4.0.1",
                    "format": ["json"],
                    "software": {"name": "Guahao reference HIS", "version": "1"},
                    "rest": [
                        {
                            "mode": "server",
                            "resource": [
                                {
                                    "type": t,
                                    "interaction": [{"code": "search-type"}, {"code": "read"}],
                                    "searchParam": [{"name": "_lastUpdated", "type": "date"}],
                                }
                                for t in types
                            ]
                            + [
                                {
                                    "type": "Appointment",
                                    "interaction": [
                                        {"code": "create"},
                                        {"code": "update"},
                                        {"code": "search-type"},
                                    ],
                                    "conditionalCreate": True,
                                    "conditionalUpdate": True,
                                    "operation": [
                                        {"name": name, "definition": f"{IHE}/appointment-{name}"}
                                        for name in ("find", "hold", "book")
                                    ],
                                }
                            ],
                        }
                    ],
                },
                media_type=FHIR_JSON,
            )

        @post("/auth/token", status_code=200)
        async def token(request: Request[Any, Any, Any]) -> Response[Any]:
            """SMART Backend Services: client_credentials with a private_key_jwt assertion."""
            form = dict((await request.form()).items())
            if form.get("grant_type") != "client_credentials":
                return Response({"error": "unsupported_grant_type"}, status_code=400)
            if form.get("client_assertion_type") != (
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            ):
                return Response({"error": "invalid_client"}, status_code=401)
            assertion = str(form.get("client_assertion", ""))
            try:
                client_id = _issuer(assertion)
                key = JWKRegistry.import_key(sim.client_keys[client_id])
                decoded = jwt.decode(assertion, key, algorithms=["RS384", "ES384", "RS256"])
                jwt.JWTClaimsRegistry(
                    exp={"essential": True},
                    sub={"essential": True, "value": client_id},
                    aud={"essential": True, "value": f"{sim.base_url}/auth/token"},
                ).validate(decoded.claims)
            except (JoseError, KeyError, ValueError) as exc:
                return Response(
                    {"error": "invalid_client", "error_description": str(exc)}, status_code=401
                )
            issued = secrets.token_urlsafe(24)
            sim.tokens.add(issued)
            return Response(
                {
                    "access_token": issued,
                    "token_type": "bearer",
                    "expires_in": 300,
                    "scope": form.get("scope", "system/*.rs"),
                }
            )

        @get("/fhir/{kind:str}", media_type=FHIR_JSON)
        async def search(request: Request[Any, Any, Any], kind: str) -> Response[Any]:
            if sim.refuses():
                return _outcome(503, "HIS down")
            if not sim.authorized(request):
                return _outcome(401, "a SMART backend access token is required")
            if kind not in sim.store.resources:
                return _outcome(404, f"unknown resource type {kind}")
            params = dict(request.query_params)
            count = min(int(params.pop("_count", "100")), 1000)
            offset = int(params.pop("_offset", "0"))
            updated = params.pop("_lastUpdated", "")
            after = None
            if updated[:2] in ("gt", "ge"):
                after = datetime.fromisoformat(updated[2:].replace("Z", "+00:00"))
                if updated.startswith("gt"):
                    after += timedelta(microseconds=1)
            found = sim.store.search(kind, updated_after=after, **params)
            page = found[offset : offset + count]
            query = urlencode([(k, v) for k, v in request.query_params.items() if k != "_offset"])
            links = [{"relation": "self", "url": str(request.url)}]
            if offset + count < len(found):
                links.append(
                    {
                        "relation": "next",
                        "url": f"{sim.base_url}/fhir/{kind}?{query}&_offset={offset + count}",
                    }
                )
            return Response(
                {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "total": len(found),
                    "link": links,
                    "entry": [
                        {"fullUrl": f"{sim.base_url}/fhir/{kind}/{r['id']}", "resource": r}
                        for r in page
                    ],
                },
                media_type=FHIR_JSON,
            )

        def _book(appointment: dict[str, Any], status: str) -> None:
            start = appointment.get("start")
            doctor = ""
            for p in appointment.get("participant", []):
                ref = (p.get("actor") or {}).get("reference", "")
                if ref.startswith("Practitioner/"):
                    doctor = ref.split("/")[1]
            schedules = sim.store.schedules_of(doctor)

            def instant(text: str | None) -> str:
                return datetime.fromisoformat((text or "").replace("Z", "+00:00")).isoformat()

            for slot in sim.store.resources["Slot"].values():
                if (
                    start
                    and instant(slot["start"]) == instant(start)
                    and (slot["schedule"]["reference"] in schedules)
                ):
                    # a hold (pending, IHE $hold) takes a unit as a booking does
                    taken = sum(
                        1
                        for a in sim.store.resources["Appointment"].values()
                        if a.get("start")
                        and instant(a["start"]) == instant(start)
                        and a["status"] in ("booked", "pending")
                    )
                    capacity = slot.get("extension", [{}])[0].get("valueInteger", 1)
                    slot["status"] = "busy" if taken >= capacity else "free"
                    sim.store.touch(slot, sim.now())

        @post("/fhir/Appointment", media_type=FHIR_JSON)
        async def create(request: Request[Any, Any, Any]) -> Response[Any]:
            if sim.refuses():
                return _outcome(503, "HIS down")
            body = await request.json()
            condition = request.headers.get("if-none-exist", "")
            if condition.startswith("identifier="):
                existing = sim.store.search("Appointment", identifier=condition[11:])
                if existing:
                    return Response(existing[0], status_code=200, media_type=FHIR_JSON)
            if body.get("resourceType") != "Appointment":
                return _outcome(400, "an Appointment is expected")
            body["id"] = f"appt-{len(sim.store.resources['Appointment']) + 1}"
            mrn = f"MR{len(sim.store.resources['Appointment']) + 1000}"
            body.setdefault("participant", []).append(
                {"actor": {"reference": f"Patient/{mrn}"}, "status": "accepted"}
            )
            sim.store.touch(body, sim.now())
            sim.store.resources["Appointment"][body["id"]] = body
            _book(body, body.get("status", ""))
            sim.store.save()
            return Response(body, status_code=201, media_type=FHIR_JSON)

        @put("/fhir/Appointment", media_type=FHIR_JSON)
        async def update(request: Request[Any, Any, Any], identifier: str) -> Response[Any]:
            if sim.refuses():
                return _outcome(503, "HIS down")
            body = await request.json()
            existing = sim.store.search("Appointment", identifier=identifier)
            if not existing:
                body["id"] = f"appt-{len(sim.store.resources['Appointment']) + 1}"
                status = 201
            else:
                body["id"] = existing[0]["id"]
                body["participant"] = existing[0].get("participant", body.get("participant", []))
                status = 200
            sim.store.touch(body, sim.now())
            sim.store.resources["Appointment"][body["id"]] = body
            _book(body, body.get("status", ""))
            sim.store.save()
            return Response(body, status_code=status, media_type=FHIR_JSON)

        def _parameter(body: dict[str, Any], name: str) -> dict[str, Any]:
            for p in body.get("parameter", []):
                if p.get("name") == name:
                    found: dict[str, Any] = p
                    return found
            return {}

        @post("/fhir/Appointment/$find", media_type=FHIR_JSON, status_code=200)
        async def find(request: Request[Any, Any, Any]) -> Response[Any]:
            """IHE ITI-115: proposed appointments for free slots in [start, end)."""
            if sim.refuses():
                return _outcome(503, "HIS down")
            body = await request.json()
            start = _parameter(body, "start").get("valueDateTime", "")
            end = _parameter(body, "end").get("valueDateTime", "")
            doctor = _parameter(body, "practitioner").get("valueReference", {}).get("reference", "")
            schedules = sim.store.schedules_of(doctor.removeprefix("Practitioner/"))
            proposed = []
            for slot in sorted(sim.store.resources["Slot"].values(), key=lambda s: s["start"]):
                at = datetime.fromisoformat(slot["start"].replace("Z", "+00:00"))
                if slot["status"] != "free" or slot["schedule"]["reference"] not in schedules:
                    continue
                if not (datetime.fromisoformat(start) <= at < datetime.fromisoformat(end)):
                    continue
                proposed.append(
                    {
                        "resourceType": "Appointment",
                        "id": f"proposed-{slot['id']}",
                        "status": "proposed",
                        "start": slot["start"],
                        "end": slot["end"],
                        "slot": [{"reference": f"Slot/{slot['id']}"}],
                        "participant": [{"actor": {"reference": doctor}, "status": "accepted"}],
                    }
                )
            return Response(
                {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "total": len(proposed),
                    "entry": [{"resource": a} for a in proposed],
                },
                media_type=FHIR_JSON,
            )

        def _proposal(reference: str) -> dict[str, Any] | None:
            slot_id = reference.removeprefix("Appointment/").removeprefix("proposed-")
            slot = sim.store.resources["Slot"].get(slot_id)
            if slot is None or slot["status"] != "free":
                return None
            return {"slot": slot, "start": slot["start"], "end": slot["end"]}

        @post("/fhir/Appointment/$hold", media_type=FHIR_JSON, status_code=200)
        async def hold(request: Request[Any, Any, Any]) -> Response[Any]:
            """IHE ITI-116: hold a proposed appointment (status pending)."""
            if sim.refuses():
                return _outcome(503, "HIS down")
            body = await request.json()
            resource = _parameter(body, "appointment-resource").get("resource") or {}
            reference = _parameter(body, "appointment-reference").get("valueReference", {})
            identifiers = resource.get("identifier", [])
            for ident in identifiers:  # $hold is idempotent by the client's identifier
                known = sim.store.search(
                    "Appointment", identifier=f"{ident.get('system')}|{ident.get('value')}"
                )
                if known and known[0]["status"] in ("pending", "booked"):
                    return Response(
                        {
                            "resourceType": "Bundle",
                            "type": "collection",
                            "entry": [{"resource": known[0]}],
                        },
                        media_type=FHIR_JSON,
                    )
            proposal = _proposal(str(resource.get("id") or reference.get("reference", "")))
            if proposal is None:
                return _outcome(409, "the proposed appointment is no longer available")
            held = {
                "resourceType": "Appointment",
                "id": f"hold-{len(sim.store.resources['Appointment']) + 1}",
                "identifier": identifiers,
                "status": "pending",
                "start": proposal["start"],
                "end": proposal["end"],
                "slot": [{"reference": f"Slot/{proposal['slot']['id']}"}],
                "participant": [
                    {"actor": actor, "status": "accepted"}
                    for actor in sim.store.resources["Schedule"][
                        proposal["slot"]["schedule"]["reference"].split("/")[1]
                    ]["actor"]
                ],
            }
            sim.store.touch(held, sim.now())
            sim.store.resources["Appointment"][held["id"]] = held
            _book(held, "pending")
            sim.store.save()
            return Response(
                {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": held}]},
                media_type=FHIR_JSON,
            )

        @post("/fhir/Appointment/$book", media_type=FHIR_JSON, status_code=200)
        async def book(request: Request[Any, Any, Any]) -> Response[Any]:
            """IHE ITI-117: book a held or proposed appointment, or the given resource."""
            if sim.refuses():
                return _outcome(503, "HIS down")
            body = await request.json()
            resource = _parameter(body, "appointment-resource").get("resource")
            reference = _parameter(body, "appointment-reference").get("valueReference", {})
            held_id = str((resource or {}).get("id", ""))
            if resource is not None and held_id in sim.store.resources["Appointment"]:
                booked = sim.store.resources["Appointment"][held_id]  # a hold, now booked
                if booked["status"] != "pending":
                    return _outcome(409, f"{held_id} is not held")
                booked["identifier"] = resource.get("identifier", [])
            elif resource is not None:
                for ident in resource.get("identifier", []):
                    known = sim.store.search(
                        "Appointment", identifier=f"{ident.get('system')}|{ident.get('value')}"
                    )
                    if known and known[0]["status"] == "pending":
                        booked = known[0]  # the client's own hold ($hold), booked now
                        break
                    if known:  # $book is idempotent by the client's identifier
                        return Response(
                            {
                                "resourceType": "Bundle",
                                "type": "collection",
                                "entry": [{"resource": known[0]}],
                            },
                            media_type=FHIR_JSON,
                        )
                else:
                    booked = dict(resource)
                    booked["id"] = f"appt-{len(sim.store.resources['Appointment']) + 1}"
            else:
                ref = str(reference.get("reference", "")).removeprefix("Appointment/")
                held = sim.store.resources["Appointment"].get(ref)
                if held is None or held["status"] not in ("pending", "proposed"):
                    return _outcome(409, f"{ref} is not held")
                booked = held
            booked["status"] = "booked"
            sim.store.touch(booked, sim.now())
            sim.store.resources["Appointment"][booked["id"]] = booked
            _book(booked, "booked")
            sim.store.save()
            return Response(
                {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": booked}]},
                media_type=FHIR_JSON,
            )

        @put("/fhir/Patient", media_type=FHIR_JSON)
        async def file_patient(request: Request[Any, Any, Any], identifier: str) -> Response[Any]:
            """建档: conditional update by the platform's patient identifier."""
            if sim.refuses():
                return _outcome(503, "HIS down")
            body = await request.json()
            if body.get("resourceType") != "Patient":
                return _outcome(400, "a Patient is expected")
            existing = sim.store.search("Patient", identifier=identifier)
            body["id"] = (
                existing[0]["id"]
                if existing
                else f"MR{len(sim.store.resources['Patient']) + 1:06d}"
            )
            sim.store.touch(body, sim.now())
            sim.store.resources["Patient"][body["id"]] = body
            sim.store.save()
            return Response(body, status_code=200 if existing else 201, media_type=FHIR_JSON)

        @post("/admin/outage")
        async def outage(data: dict[str, Any]) -> dict[str, Any]:
            if data.get("after") is not None:
                sim.down_after = int(data["after"])
            else:
                sim.down, sim.down_after = bool(data.get("down")), None
            return {"down": sim.down, "after": sim.down_after}

        @post("/admin/stop")
        async def stop(data: dict[str, Any]) -> dict[str, Any]:
            day = date.fromisoformat(data["date"])
            slots = sim.store.session_slots(data["doctor"], day, data["period"])
            reason = data.get("reason", "停诊")
            for slot in slots:
                slot["status"] = "busy-unavailable"
                slot["comment"] = reason
                sim.store.touch(slot, sim.now())
            sim.store.save()
            ack = ""
            if data.get("via") == "hl7v2" and slots:
                start = datetime.fromisoformat(slots[0]["start"].replace("Z", "+00:00"))
                message = "\r".join(
                    [
                        f"MSH|^~\\&|HIS|{sim.facility}|GUAHAO|REGION|"
                        f"{sim.now():%Y%m%d%H%M%S}+0000||SIU^S15^SIU_S12|"
                        f"{data.get('control_id') or secrets.token_hex(8)}|P|2.5",
                        f"SCH||{slots[0]['id']}||||STOP^停诊|^{reason}||||"
                        f"^^240^{start:%Y%m%d%H%M%S}+0000",
                        "RGS|1|D",
                        f"AIP|1|D|{data['doctor']}",
                    ]
                )
                ack = await sim.send_hl7(message)
            return {"slots": len(slots), "ack": ack}

        @post("/admin/check-in")
        async def check_in(data: dict[str, Any]) -> dict[str, Any]:
            message = "\r".join(
                [
                    f"MSH|^~\\&|HIS|{sim.facility}|GUAHAO|REGION|{sim.now():%Y%m%d%H%M%S}+0000||"
                    f"ADT^A04^ADT_A01|{data.get('control_id') or secrets.token_hex(8)}|P|2.5",
                    "EVN|A04",
                    f"PID|1||{data.get('mrn', 'MR1')}^^^{sim.facility}^MR||{data.get('name', '')}",
                    f"PV1|1|O|||||||||||||||||{data['booking']}^^^GUAHAO^VN",
                ]
            )
            return {"ack": await sim.send_hl7(message)}

        @post("/admin/hl7")
        async def send_raw(data: dict[str, Any]) -> dict[str, Any]:
            return {"ack": await sim.send_hl7(data["message"])}

        @post("/admin/capacity")
        async def capacity(data: dict[str, Any]) -> dict[str, Any]:
            slot = sim.store.resources["Slot"][data["slot"]]
            slot["extension"] = [
                {"url": CANONICAL_SYSTEMS["capacity"], "valueInteger": int(data["capacity"])}
            ]
            sim.store.touch(slot, sim.now())
            sim.store.save()
            return {"slot": data["slot"], "capacity": int(data["capacity"])}

        @get("/admin/appointments")
        async def appointments() -> list[dict[str, Any]]:
            return list(sim.store.resources["Appointment"].values())

        @get("/admin/hl7")
        async def received() -> list[str]:
            return list(sim.store.received_hl7)

        @contextlib.asynccontextmanager
        async def lifespan(_app: Litestar) -> AsyncIterator[None]:
            yield

        return Litestar(
            route_handlers=[
                token,
                metadata,
                search,
                create,
                update,
                file_patient,
                find,
                hold,
                book,
                outage,
                stop,
                check_in,
                send_raw,
                capacity,
                appointments,
                received,
            ],
            lifespan=[lifespan],
            state=State({}),
            debug=False,
        )
