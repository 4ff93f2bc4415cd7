"""The citizens of bench/flow_surge.py: a Locust file, run by Locust in its own environment.

Each simulated citizen takes the next prepared account (a token and the account's patient)
and books as a person does at a release: hold a unit, choose the patient, submit, pay at
the sandbox cashier, look at the booking; some leave the hold, some let it run out, some
cancel once confirmed. A unit that is gone (409) sends the citizen to another slot, up to
three times. Every request is named after its step, so Locust's table gives throughput and
latency per step; every answer outside 2xx is a failure named by its HTTP status and error
code, so the failures table is the errors by code.

Not imported by the platform or the tests: it needs nothing but Locust and the standard
library (Locust's gevent must not meet the platform's asyncio). Set by flow_surge.py:
``FLOW_CITIZENS`` (one "token patient_id" line per account), ``FLOW_SLOTS`` (one slot id a
line), ``FLOW_SHARES`` (``abandon,expire,cancel`` fractions) and ``FLOW_THINK`` (seconds a
citizen waits between steps, at most; uniform from zero).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant, task
from locust.exception import StopUser

_CITIZENS = iter(
    [
        line.split()
        for line in Path(os.environ["FLOW_CITIZENS"]).read_text().splitlines()
        if line.strip()
    ]
)
_SLOTS = [s for s in Path(os.environ["FLOW_SLOTS"]).read_text().split() if s]
_ABANDON, _EXPIRE, _CANCEL = (float(x) for x in os.environ["FLOW_SHARES"].split(","))
_THINK = float(os.environ.get("FLOW_THINK", "0.5"))
_ADDRESSES = itertools.count()


def _code(response: Any) -> str:
    try:
        return str(json.loads(response.text or "{}").get("code", ""))
    except ValueError:
        return ""


class Citizen(FastHttpUser):
    """One person after another through one Locust user: a user that has booked takes the
    next account, so the run counts journeys, not users."""

    wait_time = constant(0)

    def on_start(self) -> None:
        n = next(_ADDRESSES)
        # carrier NAT: many citizens behind one address, as in bench/http_surge.py
        self.address = f"10.{n % 250}.{(n // 250) % 8}.9"
        self.rng = random.Random(n)

    def _think(self) -> None:
        if _THINK > 0:
            self.client_sleep(self.rng.uniform(0, _THINK))

    def client_sleep(self, seconds: float) -> None:
        import gevent

        gevent.sleep(seconds)

    def _call(
        self, method: str, path: str, name: str, token: str, body: Any = None, key: str = ""
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": self.address}
        if key:
            headers["Idempotency-Key"] = key
        with self.client.request(
            method, path, name=name, headers=headers, json=body, catch_response=True
        ) as response:
            status = response.status_code
            if 200 <= status < 300:
                response.success()
                try:
                    data = json.loads(response.text or "{}")
                except ValueError:
                    data = {}
                return status, data if isinstance(data, dict) else {"items": data}
            response.failure(f"HTTP {status} {_code(response)}".strip())
            return status, {}

    @task
    def journey(self) -> None:
        try:
            token, patient_id = next(_CITIZENS)
        except StopIteration:
            raise StopUser() from None
        booking_id = ""
        for _attempt in range(3):
            slot = self.rng.choice(_SLOTS)
            status, held = self._call(
                "POST",
                "/api/v1/holds",
                "1 hold",
                token,
                {"slotId": slot},
                key=uuid.uuid4().hex,
            )
            if status == 201:
                booking_id = held["id"]
                break
            if status != 409:
                return
        if not booking_id:
            return
        fate = self.rng.random()
        self._think()
        if fate < _ABANDON:
            self._call("POST", f"/api/v1/bookings/{booking_id}/leave", "2 leave", token)
            return
        if fate < _ABANDON + _EXPIRE:
            return  # walks away: the hold runs out
        status, _ = self._call(
            "PUT",
            f"/api/v1/bookings/{booking_id}/patient",
            "3 choose patient",
            token,
            {"patientId": patient_id},
        )
        if status != 200:
            return
        self._think()
        status, submitted = self._call(
            "POST",
            f"/api/v1/bookings/{booking_id}/submit",
            "4 submit",
            token,
            {"channel": "self_pay"},
        )
        if status != 200:
            return
        if submitted.get("payUrl"):
            self._think()
            status, _ = self._call(
                "POST", f"{submitted['payUrl']}?channel=self_pay", "5 pay", token
            )
            if status >= 300:
                return
        status, booking = self._call("GET", f"/api/v1/bookings/{booking_id}", "6 view", token)
        if booking.get("status") != "confirmed":
            return
        if self.rng.random() < _CANCEL:
            self._think()
            self._call("POST", f"/api/v1/bookings/{booking_id}/cancel", "7 cancel", token)
