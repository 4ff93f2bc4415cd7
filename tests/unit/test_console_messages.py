"""The console's message catalogue: every key its templates name exists, in both languages,
and every value a console page shows by prefix has a name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guahao.platform.bookings import BookingStatus
from guahao.platform.services.staff import StaffRole
from guahao.web.pages.console_messages import CONSOLE_MESSAGES, ConsoleTranslator
from guahao.web.pages.messages import MESSAGES

TEMPLATES = Path(__file__).parents[2] / "guahao" / "web" / "templates" / "console"
LITERAL_KEY = re.compile(r"""\bt\(\s*['"]([a-z_.]*[a-z_])['"]""")


def test_every_key_a_console_template_names_is_in_a_catalogue() -> None:
    used = {
        key for page in TEMPLATES.glob("*.html") for key in LITERAL_KEY.findall(page.read_text())
    }
    assert len(used) > 100
    assert sorted(used - set(CONSOLE_MESSAGES) - set(MESSAGES)) == []


@pytest.mark.parametrize("key", sorted(CONSOLE_MESSAGES))
def test_every_console_message_has_chinese_and_english(key: str) -> None:
    zh, en = CONSOLE_MESSAGES[key]
    assert re.search(r"[\u4e00-\u9fff]", zh), key
    assert en
    assert set(re.findall(r"\{(\w+)\}", zh)) == set(re.findall(r"\{(\w+)\}", en)), key


@pytest.mark.parametrize(
    ("prefix", "values"),
    [
        ("booking.", [s.value for s in BookingStatus]),
        ("session.", ["open", "stopped", "finished"]),
        ("role.", [r.value for r in StaffRole]),
        ("filing.", ["pending", "filed", "failed"]),
        ("appeals.", ["pending", "granted", "rejected", "all"]),
        ("sync.", ["ok", "failed", "never"]),
        (
            "rule.",
            [
                "segment_minutes",
                "online_share",
                "midnight_releases",
                "onsite_quota",
                "add_on_traceable",
            ],
        ),
        ("export.", ["supply-demand", "access", "rankings", "compliance", "unmet-demand"]),
    ],
)
def test_every_value_a_console_page_shows_has_a_name(prefix: str, values: list[str]) -> None:
    assert [v for v in values if prefix + v not in CONSOLE_MESSAGES] == []


def test_the_console_falls_back_to_the_shared_strings_and_reads_refusals_as_the_api() -> None:
    assert ConsoleTranslator("zh")("period.morning") == "上午"
    assert ConsoleTranslator("en")("console.name") == "Booking console"
    assert ConsoleTranslator("zh").error("HOSPITAL_SCOPE_DENIED") != "HOSPITAL_SCOPE_DENIED"
