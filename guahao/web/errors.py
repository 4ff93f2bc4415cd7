"""One table from error kinds and codes to HTTP statuses, and the error body.

Every error response has the same shape: ``{"code", "message": {"zh", "en"}, "detail"}``.
Bad input never becomes a 500: Litestar's own validation errors are re-shaped into
``VALIDATION_FAILED`` naming the failing field, and so is a body that cannot be decoded at all
(malformed JSON, text that is not UTF-8), with ``detail.reason == "malformed_body"``.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from redis.exceptions import ClusterDownError, RedisClusterException, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from guahao.platform.error_codes import CODES
from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.outages import is_database_outage

__all__ = ["STATUS_BY_CODE", "STATUS_BY_KIND", "exception_handlers", "refusal_answer"]

log = logging.getLogger(__name__)

STATUS_BY_KIND = {
    "not_found": 404,
    "conflict": 409,
    "invalid": 422,
    "forbidden": 403,
    "rate_limited": 429,
    "unavailable": 503,
}
STATUS_BY_CODE = {
    "UNAUTHENTICATED": 401,
    "CREDENTIALS_INVALID": 401,
    "STAFF_CREDENTIALS_INVALID": 401,
    "METRICS_TOKEN_INVALID": 401,
    "REQUEST_BODY_TOO_LARGE": 413,
}


def _body(code: str, zh: str, en: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {"code": code, "message": {"zh": zh, "en": en}, "detail": detail}


def refusal_answer(exc: GuahaoError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers of a refusal: one place, for the exception handler and for
    the answers given before Litestar (``guahao.web.front_answers``)."""
    status = STATUS_BY_CODE.get(exc.code, STATUS_BY_KIND.get(exc.kind, 400))
    headers = {}
    retry = exc.detail.get("retry_after_seconds")
    if status in (429, 503) and isinstance(retry, int):  # clients and proxies honour it
        headers["Retry-After"] = str(retry)
    return status, _body(exc.code, exc.message_zh, exc.message_en, exc.detail), headers


def _guahao(request: Request[Any, Any, Any], exc: GuahaoError) -> Response[dict[str, Any]]:
    request.state.error_code = exc.code  # for the metrics (hold outcomes by refusal code)
    status, body, headers = refusal_answer(exc)
    return Response(body, status_code=status, headers=headers)


def _catalogued(code: str, status: int, **detail: Any) -> Response[dict[str, Any]]:
    _, zh, en = CODES[code]
    return Response(_body(code, zh, en, detail), status_code=status)


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    extra = exc.extra if isinstance(exc.extra, list) else [exc.extra] if exc.extra else []
    return _catalogued("VALIDATION_FAILED", 422, problems=extra, reason=exc.detail)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if isinstance(exc, NotAuthorizedException):
        return _catalogued("UNAUTHENTICATED", 401)
    if exc.status_code == 413:  # Litestar's RequestEntityTooLarge, raised while reading
        return _catalogued("REQUEST_BODY_TOO_LARGE", 413)
    if isinstance(exc, NotFoundException):
        return Response(
            _body("ROUTE_NOT_FOUND", "请求的地址不存在", "No such address", {}), status_code=404
        )
    if isinstance(exc, ClientException) and exc.status_code == 400:
        # A body that cannot be decoded at all (malformed JSON, wrong encoding): Litestar
        # raises a bare 400 before any validation runs. It is bad input like any other.
        reason = (
            "malformed_body" if isinstance(exc.__cause__, SerializationException) else "bad_request"
        )
        return _catalogued("VALIDATION_FAILED", 422, reason=reason, problem=exc.detail)
    if exc.status_code < 500:
        return Response(
            _body("REQUEST_REFUSED", "请求被拒绝", exc.detail, {}), status_code=exc.status_code
        )
    return _internal(_, exc)


_BODY_DECODER = "litestar.serialization.msgspec_hooks"


def _raised_decoding_the_body(exc: BaseException) -> bool:
    """Whether ``exc`` came out of Litestar decoding the request body (JSON or MessagePack)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") == _BODY_DECODER:
            return True
        tb = tb.tb_next
    return False


def _undecodable(
    request: Request[Any, Any, Any], exc: UnicodeDecodeError
) -> Response[dict[str, Any]]:
    # msgspec reports a string that is not UTF-8 with UnicodeDecodeError, which Litestar does
    # not turn into a 400 as it does msgspec.DecodeError: without this it would be a 500.
    if _raised_decoding_the_body(exc):
        return _catalogued(
            "VALIDATION_FAILED", 422, reason="malformed_body", problem="the body is not UTF-8"
        )
    return _internal(request, exc)


def _internal(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error", exc_info=exc)
    return Response(
        _body("INTERNAL_ERROR", "系统繁忙，请稍后再试", "Something went wrong; try again", {}),
        status_code=500,
    )


def _unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """A dependency (database, Redis) did not answer: 503 with Retry-After, never a 500."""
    log.warning("dependency unavailable: %s", exc)
    response = _catalogued("SERVICE_UNAVAILABLE", 503)
    response.headers["Retry-After"] = "2"
    return response


def _raised_inside_redis(exc: BaseException) -> bool:
    traceback = exc.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    module = "" if traceback is None else str(traceback.tb_frame.f_globals.get("__name__", ""))
    return module.startswith("redis.")


def _redis_fault(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """redis-py fails a command on a connection another task was closing (a reset, a
    cluster's layout re-read) with ``AttributeError: 'NoneType' object has no attribute
    'writelines'`` or a ``TypeError`` instead of its ``ConnectionError`` (redis-py issues
    #4287, #3835). Raised inside redis-py it is Redis away for this request: a 503 as any
    outage; raised in our own code it is still our fault, a logged 500."""
    if _raised_inside_redis(exc):
        return _unavailable(request, exc)
    return _internal(request, exc)


def _database(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[dict[str, Any]]:
    """Any other driver error: 503 when the database is only away (shutting down, starting up,
    locked), a logged 500 when it is a fault of ours (a violated constraint, a bad query)."""
    if is_database_outage(exc):
        return _unavailable(request, exc)
    return _internal(request, exc)


exception_handlers: dict[type[Exception] | int, Any] = {
    OperationalError: _unavailable,
    InterfaceError: _unavailable,
    PoolTimeoutError: _unavailable,  # every pooled connection busy past the pool's timeout
    DBAPIError: _database,
    ConnectionError: _unavailable,  # a driver's refused or reset connection, unwrapped
    RedisConnectionError: _unavailable,
    RedisTimeoutError: _unavailable,
    # Redis Cluster: no node serves a slot now, slots are moving, or no node answered
    ClusterDownError: _unavailable,
    TryAgainError: _unavailable,
    RedisClusterException: _unavailable,
    AttributeError: _redis_fault,
    TypeError: _redis_fault,
    GuahaoError: _guahao,
    ValidationException: _validation,
    HTTPException: _http,
    UnicodeDecodeError: _undecodable,
    Exception: _internal,
}
