"""Proving a patient relation over HTTP (docs/identity.md): once a person is proven on one
account, another account that adds them gets ``pending_code``, sees nothing of their record
and can book nothing for them until it enters the code sent to the person's phone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import update

from guahao.bootstrap import Platform
from guahao.platform.persistence.tables import PatientRow
from tests.e2e.pages.support import sent_code
from tests.e2e.support import Citizen, assert_refused


async def test_a_pending_relation_is_made_by_the_code_sent_to_the_person(
    platform: Platform,
    sign_up: Callable[[], Awaitable[Citizen]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder, other = await sign_up(), await sign_up()
    own = await holder.add_patient(name="李四")
    # as the region's verification port would have done: the name matched to the number
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(
            update(PatientRow).where(PatientRow.id == own["id"]).values(proof="name_matched")
        )
    number = await _number_of(platform, own["id"])

    added = await other.post(
        "/api/v1/me/patients",
        json={
            "name": "李四",
            "documentType": "resident_id",
            "documentNumber": number,
            "relation": "parent",
        },
    )
    assert added.status_code == 201, added.text
    pending = added.json()
    assert pending["proof"] == "pending_code"
    assert pending["codeSentTo"] == f"{holder.phone[:3]}****{holder.phone[-4:]}"
    path = f"/api/v1/me/patients/{pending['id']}"
    standing = f"/api/v1/patients/{pending['id']}/standing"
    assert_refused(await other.get(standing), 403, "PATIENT_PROOF_PENDING")
    assert_refused(
        await other.post(f"{path}/proof", json={"code": "12345x"}),
        422,
        "PATIENT_PROOF_CODE_INVALID",
    )
    # someone else's account cannot enter it for them
    assert_refused(
        await holder.post(f"{path}/proof", json={"code": "000000"}), 403, "PATIENT_NOT_OWNED"
    )
    proven = await other.post(f"{path}/proof", json={"code": sent_code(caplog, holder.phone)})
    assert proven.status_code == 200, proven.text
    assert proven.json()["proof"] == "code"
    assert (await other.get(standing)).status_code == 200


async def _number_of(platform: Platform, patient_id: str) -> str:
    async with platform.ports.sessions() as session:
        row = await session.get(PatientRow, patient_id)
        assert row is not None
        return platform.ports.vault.open("document", row.document_enc)
