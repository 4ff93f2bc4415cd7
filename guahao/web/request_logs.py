"""Structured logs (structlog) with a request id on every line, and no personal data.

Every log line is one JSON object rendered by structlog and handed to the standard library's
logging (so uvicorn, saq and our own ``logging`` users share handlers and levels). The request
id comes from the ``X-Request-ID`` header when a proxy sent a well-formed one, otherwise it is
made here; it is bound in a context variable for the request's lifetime, so every line logged
while serving it carries it, and it is sent back in the response's ``X-Request-ID``.

Personal data stays out by construction (routes are logged by template, never the raw path or
query string, which can carry a symptom search) and by a last redaction step that masks
anything shaped like a resident identity number or a mainland mobile number.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["StandardLines", "configure_logging", "redact", "request_log", "standard_log_handler"]

_ID_NUMBER = re.compile(r"(?<![0-9])[1-9][0-9]{5}(?:19|20)[0-9]{2}[01][0-9][0-3][0-9]{4}[0-9Xx]")
_PHONE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")


def redact(text: str) -> str:
    """Mask identity numbers and mobile numbers in ``text``.

    >>> redact("patient 11010519491231002X called from 13812345678")
    'patient [id-number] called from [phone]'
    """
    return _PHONE.sub("[phone]", _ID_NUMBER.sub("[id-number]", text))


def _redact_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


_configured = False


def configure_logging() -> None:
    """Configure structlog once per process (idempotent: every app calls it)."""
    global _configured
    if _configured:
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_event,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
    _configured = True


REQUEST_LOGGER = "guahao.requests"

request_log = structlog.get_logger(REQUEST_LOGGER)
"""The logger of the request telemetry (one line per request)."""


class StandardLines(structlog.stdlib.ProcessorFormatter):
    """The standard library's records (ours, uvicorn's, saq's, the drivers') as the same JSON
    lines as the request lines: level, logger, time, the request id bound while serving, the
    message and any traceback, masked by the same last step.

    Without it they were plain text with no request id and nothing masked, and an exception's
    text (a driver's error quoting the row it refused) is where a phone number would slip
    into a log. The request lines themselves are rendered and masked by structlog already and
    pass through as they are.
    """

    def __init__(self) -> None:
        super().__init__(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                structlog.processors.StackInfoRenderer(),
                _redact_event,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(ensure_ascii=False),
            ],
        )

    def format(self, record: logging.LogRecord) -> str:
        if record.name == REQUEST_LOGGER:
            return record.getMessage()
        return super().format(record)


def standard_log_handler() -> logging.Handler:
    """The root handler of a Guahao process (standard error, one JSON object a line)."""
    handler = logging.StreamHandler()
    handler.setFormatter(StandardLines())
    return handler
