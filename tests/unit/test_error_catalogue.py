"""The error catalogue is API: every code is documented and maps to one HTTP status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guahao.platform.error_codes import CODES, error
from guahao.web.errors import STATUS_BY_CODE, STATUS_BY_KIND

API_GUIDE = Path(__file__).parents[2] / "docs" / "api.md"


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_has_two_messages_and_one_status(code: str) -> None:
    err = error(code)
    assert err.message_zh
    assert err.message_en
    assert re.search(r"[\u4e00-\u9fff]", err.message_zh), "the Chinese message is Chinese"
    status = STATUS_BY_CODE.get(code, STATUS_BY_KIND[err.kind])
    assert status in {401, 403, 404, 409, 413, 422, 429, 503}


def test_every_code_is_in_the_api_guide() -> None:
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", API_GUIDE.read_text(), re.M))
    assert documented == set(CODES)
