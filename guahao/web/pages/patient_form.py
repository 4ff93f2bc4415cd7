"""The real-name form (添加就诊人) as both pages submit it: in the booking flow, where the unit
stays held meanwhile, and under my patients."""

from __future__ import annotations

from collections.abc import Mapping

from guahao.platform.services.accounts import AccountService, PatientView

__all__ = ["add_patient_from_form"]


async def add_patient_from_form(
    accounts: AccountService, account_id: str, form: Mapping[str, str]
) -> PatientView:
    """Add the patient the form names; refusals (``GuahaoError``) go back to the form."""
    return await accounts.add_patient(
        account_id=account_id,
        name=form.get("name", ""),
        document_type=form.get("document_type", "resident_id"),
        document_number=form.get("document_number", ""),
        phone=form.get("phone", ""),
        relation=form.get("relation", "other"),
    )
