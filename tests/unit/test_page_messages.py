"""The pages' message catalogue: every key a template names exists, in both languages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guahao.platform.bookings import BookingStatus
from guahao.platform.hospitals import HospitalGrade, Period, SlotCategory, Title
from guahao.platform.identity_documents import DocumentType
from guahao.platform.services.accounts import RELATIONS
from guahao.platform.strikes import StrikeKind
from guahao.web.pages.messages import MESSAGES, Translator

TEMPLATES = Path(__file__).parents[2] / "guahao" / "web" / "templates"
LITERAL_KEY = re.compile(r"""\bt\(\s*['"]([a-z_.]*[a-z_])['"]""")


def test_every_key_a_template_names_is_in_the_catalogue() -> None:
    used = {
        key for page in TEMPLATES.glob("*.html") for key in LITERAL_KEY.findall(page.read_text())
    }
    assert used, "the templates name their messages with t('…')"
    assert sorted(used - set(MESSAGES)) == []


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_every_message_has_chinese_and_english(key: str) -> None:
    zh, en = MESSAGES[key]
    assert zh
    assert en
    if not key.startswith("switch.lang"):  # the switch speaks the other language
        assert re.search(r"[\u4e00-\u9fff]", zh) or key.startswith("grade."), key


@pytest.mark.parametrize(
    ("prefix", "values"),
    [
        ("status.", [s.value for s in BookingStatus]),
        ("document.", [d.value for d in DocumentType]),
        ("relation.", sorted(RELATIONS)),
        ("title.", [t.value for t in Title]),
        ("period.", [p.value for p in Period]),
        ("category.", [c.value for c in SlotCategory]),
        ("grade.", [g.value for g in HospitalGrade]),
        ("strike.", [k.value for k in StrikeKind]),
        ("wait.status.", ["waiting", "fulfilled", "cancelled", "expired", "removed"]),
        ("lottery.status.", ["entered", "won", "lost", "ineligible", "withdrawn"]),
    ],
)
def test_every_value_a_page_shows_has_a_name(prefix: str, values: list[str]) -> None:
    assert [v for v in values if prefix + v not in MESSAGES] == []


def test_refusals_read_as_in_the_api() -> None:
    assert Translator("zh").error("SLOT_SOLD_OUT") == "号源已约满"
    assert Translator("en").error("SLOT_SOLD_OUT") == "This slot is fully booked"
