"""Dependencies every route uses: the database and the caller, checked against one scope."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction
from starlette.concurrency import run_in_threadpool

from seamline.auth.models import ApiKey
from seamline.auth.scopes import SCOPES
from seamline.auth.service import (
    LAST_USED_PRECISION,
    Caller,
    authenticate,
    hash_token,
    token_from_authorization,
    touch_last_used,
)
from seamline.db.engine import Database
from seamline.kit import clock
from seamline.kit.errors import Forbidden, Unauthenticated

SCOPE_EXTENSION = "x-required-scope"


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in its
# thread pool, one hand-off (and a GIL round trip) per request for a dictionary lookup.
async def get_db(request: Request) -> Database:
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


# Authenticated keys are remembered for a few seconds, so a request costs no read transaction
# (docs/api.md: a key revoked by another process stops working within this time; one revoked
# or changed in this process, at once — see ``_keys_changed``). Unknown keys are never kept.
AUTH_CACHE_SECONDS = 5.0
_AUTH_CACHE_MAX = 10_000
_KEYS_CHANGED = "seamline.api_keys_changed"


@dataclasses.dataclass
class _Cached:
    caller: Caller
    expires: float  # time.monotonic()
    touch_after: datetime | None  # clock time after which last use is recorded again


_auth_cache: dict[tuple[int, str], _Cached] = {}


def clear_auth_cache() -> None:
    """Forget every remembered key (a key was revoked or changed in this process)."""
    _auth_cache.clear()


@event.listens_for(Session, "after_flush")
def _note_key_changes(session: Session, flush_context: UOWTransaction) -> None:
    if any(isinstance(o, ApiKey) for o in (*session.dirty, *session.deleted)):
        session.info[_KEYS_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _keys_changed(session: Session) -> None:
    if session.info.pop(_KEYS_CHANGED, False):
        clear_auth_cache()


@event.listens_for(Session, "after_rollback")
def _keys_unchanged(session: Session) -> None:
    session.info.pop(_KEYS_CHANGED, None)


def _cached(db: Database, token: str) -> Caller | None:
    """The remembered caller when nothing needs the database (not expired, no last-use write
    due): answered on the event loop, without a hand-off to the thread pool."""
    cached = _auth_cache.get((id(db), hash_token(token)))
    if cached is None or cached.expires <= time.monotonic():
        return None
    if cached.touch_after is not None and clock.now() > cached.touch_after:
        return None
    return cached.caller


def _resolve(db: Database, token: str) -> Caller:
    cache_key = (id(db), hash_token(token))
    cached = _auth_cache.get(cache_key)
    if cached is not None and cached.expires > time.monotonic():
        now = clock.now()
        if cached.touch_after is not None and now > cached.touch_after:
            with db.transaction() as session:
                touch_last_used(session, cached.caller.key_id)
            cached.touch_after = now + LAST_USED_PRECISION
        return cached.caller
    with db.transaction(readonly=True) as session:
        caller = authenticate(session, token)
    touch_after = None
    if caller.touch_due:
        with db.transaction() as session:
            touch_last_used(session, caller.key_id)
        touch_after = clock.now() + LAST_USED_PRECISION
    if len(_auth_cache) >= _AUTH_CACHE_MAX:
        _auth_cache.clear()
    _auth_cache[cache_key] = _Cached(
        dataclasses.replace(caller, touch_due=False),
        time.monotonic() + AUTH_CACHE_SECONDS,
        touch_after,
    )
    return caller


def require(scope: str) -> Callable[..., Any]:
    """A dependency that authenticates the caller and demands ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope}")

    async def dependency(request: Request) -> Caller:
        token = bearer_token(request)
        db: Database = request.app.state.db
        caller = _cached(db, token)
        if caller is None:
            caller = await run_in_threadpool(_resolve, db, token)
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


async def current_caller(request: Request) -> Caller:
    caller: Caller = request.state.caller
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]


# ``If-Match`` on writes to a versioned resource (a cart): the ETag the client last saw.
IfMatch = Annotated[
    str | None,
    Header(
        max_length=200,
        pattern=r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$",
        description='The version the client last saw (`"3"`, the ETag); 412 if it changed.',
    ),
]
