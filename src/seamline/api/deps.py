"""Dependencies every route uses: the database and the caller, checked against one scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from seamline.auth.scopes import SCOPES
from seamline.auth.service import (
    Caller,
    authenticate,
    token_from_authorization,
    touch_last_used,
)
from seamline.db.engine import Database
from seamline.kit.errors import Forbidden, Unauthenticated

SCOPE_EXTENSION = "x-required-scope"


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


DB = Annotated[Database, Depends(get_db)]


def bearer_token(request: Request) -> str:
    """The token from ``Authorization: Bearer …`` (or HTTP Basic with the key as username)."""
    token = token_from_authorization(request.headers.get("authorization", ""))
    if token:
        return token
    raise Unauthenticated(
        "send an API key as 'Authorization: Bearer <key>'",
        code="missing_api_key",
        headers={"WWW-Authenticate": 'Bearer realm="seamline"'},
    )


def _resolve(db: Database, token: str) -> Caller:
    with db.transaction(readonly=True) as session:
        caller = authenticate(session, token)
    if caller.touch_due:
        with db.transaction() as session:
            touch_last_used(session, caller.key_id)
    return caller


def require(scope: str) -> Callable[..., Any]:
    """A dependency that authenticates the caller and demands ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope}")

    async def dependency(request: Request) -> Caller:
        token = bearer_token(request)
        caller = await run_in_threadpool(_resolve, get_db(request), token)
        if scope not in caller.scopes:
            raise Forbidden(f"this key lacks the {scope!r} scope", code="insufficient_scope")
        request.state.caller = caller
        return caller

    return dependency


def scoped(scope: str) -> dict[str, Any]:
    """Route keyword arguments declaring the scope, enforced and written into OpenAPI.

    Usage: ``@router.get("/channels", **scoped("channels:read"))``.
    """
    return {
        "dependencies": [Depends(require(scope))],
        "openapi_extra": {SCOPE_EXTENSION: scope, "security": [{"apiKey": [scope]}]},
    }


def current_caller(request: Request) -> Caller:
    caller: Caller = request.state.caller
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]
