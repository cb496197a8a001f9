"""RFC 9457 problem documents: one shape for every error, no internals ever."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from seamline.kit.errors import FieldError, SeamlineError
from seamline.observability.logging import request_id_var

PROBLEM_MEDIA_TYPE = "application/problem+json"
# The ``content`` of a documented problem response, for routes' ``responses=``.
PROBLEM_CONTENT: dict[str, Any] = {
    PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
}


def problem(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` entry for a problem it may answer, e.g. ``problem(404, …)``."""
    return {status: {"description": description, "content": PROBLEM_CONTENT}}


MALFORMED_JSON_DETAIL = "The request body is not valid JSON."
_FASTAPI_BODY_ERROR = "There was an error parsing the body"

_HTTP_CODES = {
    400: ("Bad request", "bad_request"),
    401: ("Unauthenticated", "unauthenticated"),
    403: ("Forbidden", "forbidden"),
    404: ("Not found", "not_found"),
    405: ("Method not allowed", "method_not_allowed"),
    406: ("Not acceptable", "not_acceptable"),
    409: ("Conflict", "conflict"),
    413: ("Payload too large", "payload_too_large"),
    415: ("Unsupported media type", "unsupported_media_type"),
    422: ("Unprocessable content", "validation_failed"),
    429: ("Too many requests", "rate_limited"),
    500: ("Internal server error", "internal_error"),
}


class ProblemFieldError(BaseModel):
    path: str = Field(description="Dotted location, e.g. body.lines.0.quantity")
    message: str
    code: str


class Problem(BaseModel):
    """An error response (``application/problem+json``)."""

    type: str = Field(description="URI reference naming the problem type")
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable, machine-readable error code")
    instance: str | None = None
    request_id: str | None = None
    errors: list[ProblemFieldError] = Field(default_factory=list)
    available: int | None = Field(
        default=None, description="On `insufficient_stock`: the units that could be promised."
    )

    model_config = ConfigDict(extra="allow")


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    errors: list[FieldError] | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        **(extra or {}),
        "type": f"/problems/{code}",
        "title": title or _HTTP_CODES.get(status, ("Error", "error"))[0],
        "status": status,
        "detail": detail,
        "code": code,
        "instance": instance,
        "request_id": request_id_var.get(),
        "errors": [{"path": e.path, "message": e.message, "code": e.code} for e in errors or []],
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _loc_to_path(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _validation_errors(exc: RequestValidationError) -> tuple[int, str, str, list[FieldError]]:
    raw = exc.errors()
    invalid = [e for e in raw if e.get("type") == "json_invalid"]
    if invalid:
        loc = tuple(invalid[0].get("loc", ()))
        where = f" at position {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
        reason = str((invalid[0].get("ctx") or {}).get("error", "invalid JSON"))
        fields = [FieldError("body", f"{reason}{where}", "json_invalid")]
        return 400, "malformed_json", MALFORMED_JSON_DETAIL, fields
    fields = [
        FieldError(_loc_to_path(e.get("loc", ())), str(e.get("msg", "invalid")), e.get("type", ""))
        for e in raw
    ]
    return 422, "validation_failed", "The request has invalid fields.", fields


# Transaction collisions the database resolved by aborting one side (deadlock, serialization
# failure, lock timeout): nothing was written, and the same request succeeds on a retry.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "55P03"})
# The server going away or refusing connections: shutting down, crashed, starting up.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
UNAVAILABLE_DETAIL = (
    "The database could not be reached, so the request may not have been completed. "
    "Retry it; a request that changes something, with the same Idempotency-Key."
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is out of reach rather than that the request or the
    code is wrong: a connection lost mid-request (a restart, a failover), no connection to be
    made, or none free in the pool within its timeout."""
    if isinstance(exc, SQLAlchemyTimeoutError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if orig is None or type(orig).__module__.partition(".")[0] != "psycopg":
        return False  # SQLite's "OperationalError" also means a missing table, a bad query
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is None:
        # psycopg gives no SQLSTATE when it could not connect or the socket closed.
        return type(orig).__name__ == "OperationalError"
    return sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES


def unavailable_response(path: str | None) -> JSONResponse:
    return problem_response(
        503,
        "database_unavailable",
        UNAVAILABLE_DETAIL,
        title="Service unavailable",
        instance=path,
        headers={"Retry-After": "2"},
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if database_unavailable(exc):
            # Left to the outermost layer, which logs it once and answers the same 503 for
            # the database calls made outside the routes (idempotency, authentication).
            raise exc
        if getattr(exc.orig, "sqlstate", None) not in TRANSIENT_SQLSTATES:
            raise exc
        return problem_response(
            503,
            "concurrent_update",
            "The request collided with a concurrent one and was rolled back; retry it.",
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(SeamlineError)
    async def _business(request: Request, exc: SeamlineError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.code,
            exc.detail,
            title=exc.title,
            errors=exc.errors,
            instance=request.url.path,
            headers=exc.headers or None,
            extra=exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, detail, fields = _validation_errors(exc)
        return problem_response(status, code, detail, errors=fields, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title, code = _HTTP_CODES.get(exc.status_code, ("Error", "http_error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such route."
        elif exc.status_code == 400 and detail == _FASTAPI_BODY_ERROR:
            # FastAPI's answer to a body json.loads could not even attempt (invalid UTF-8,
            # nesting deeper than the parser allows): the same problem as any malformed JSON.
            code, detail = "malformed_json", MALFORMED_JSON_DETAIL
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette's Allow names only the first route matching the path; list them all.
            allowed = _allowed_methods(request)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
                detail = f"{request.method} is not allowed here; use {', '.join(allowed)}."
        return problem_response(
            exc.status_code,
            code,
            detail,
            title=title,
            instance=request.url.path,
            headers=headers or None,
        )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route fully matches at this path (asked through the public API)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    ]
