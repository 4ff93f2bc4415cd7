"""Building the app leaves the root logger's level to the operator: Litestar's default logging
configuration set it to INFO, which rendered a request line per request at a release surge
whatever ``log_level`` said."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from guahao.config import load_settings
from guahao.web.app import create_app


@pytest.fixture
def root_at_warning() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.WARNING)
    yield root
    root.setLevel(before)


def test_creating_the_app_keeps_the_operators_root_level(
    root_at_warning: logging.Logger, tmp_path: Path
) -> None:
    settings = load_settings({}, data_dir=str(tmp_path), secret_key="k" * 40, run_jobs=False)
    create_app(settings)
    assert root_at_warning.level == logging.WARNING
    assert not logging.getLogger("guahao.requests").isEnabledFor(logging.INFO)
