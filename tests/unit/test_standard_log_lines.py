"""The standard library's log lines of a Guahao process are the same masked JSON lines as the
request lines, with the request id bound while serving: before, they were plain text, with no
id and nothing masked (an exception quoting a refused row could print a phone number)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import structlog

from guahao.web.request_logs import REQUEST_LOGGER, StandardLines

PHONE = "13812345678"
ID_NUMBER = "11010519491231002X"


def _record(name: str, message: str, *, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = None if exc is None else (type(exc), exc, exc.__traceback__)
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, (), exc_info)


def test_a_warning_is_a_masked_json_line_with_the_request_id_bound_while_serving() -> None:
    try:
        raise ValueError(f"duplicate key (phone)=({PHONE})")
    except ValueError as exc:
        raised = exc
    structlog.contextvars.bind_contextvars(request_id="edge-42")
    try:
        line = StandardLines().format(
            _record("guahao.platform.x", f"refused {ID_NUMBER}", exc=raised)
        )
    finally:
        structlog.contextvars.clear_contextvars()

    fields = json.loads(line)
    assert fields["event"] == "refused [id-number]"
    assert fields["level"] == "warning"
    assert fields["logger"] == "guahao.platform.x"
    assert fields["request_id"] == "edge-42"
    assert fields["timestamp"].endswith("Z")
    assert "ValueError: duplicate key (phone)=([phone])" in fields["exception"]
    assert PHONE not in line
    assert ID_NUMBER not in line


def test_outside_a_request_there_is_no_request_id() -> None:
    fields = json.loads(StandardLines().format(_record("uvicorn.error", "started")))
    assert "request_id" not in fields
    assert fields["event"] == "started"


def test_a_request_line_passes_as_structlog_rendered_it() -> None:
    rendered = '{"event": "request", "status": 201}'
    assert StandardLines().format(_record(REQUEST_LOGGER, rendered)) == rendered


def test_the_cli_process_writes_its_warnings_as_these_lines() -> None:
    # A process of its own: pytest's capture handlers on the root would make basicConfig a no-op.
    script = textwrap.dedent(
        f"""
        import logging, structlog
        from guahao.cli import main
        main.main(["lottery", "--help"], standalone_mode=False)
        structlog.contextvars.bind_contextvars(request_id="r-1")
        logging.getLogger("guahao.sms").warning("could not send to %s", "{PHONE}")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    # every line is one of these: nothing printed beside them (Authlib's notice about httpx2
    # was two plain lines at every start, guahao.platform.oauth_client)
    assert [text for text in done.stderr.splitlines() if not text.startswith("{")] == []
    [line] = [text for text in done.stderr.splitlines() if text.startswith("{")]
    fields = json.loads(line)
    assert fields["event"] == "could not send to [phone]"
    assert fields["request_id"] == "r-1"
    assert fields["logger"] == "guahao.sms"
