"""Idempotency keys with Stripe's semantics, for every mutating request under ``/api/``.

Same key and same request: the first stored response again (``Idempotent-Replayed: true``).
Same key, different request: 422. Same key while the first is still running: 409.
Keys are scoped to the API key that sent them and kept for ``idempotency_ttl_hours``.

A route that is idempotent by the key itself (checkout: its own ``checkouts`` row is keyed by
the API key and the ``Idempotency-Key``, and replays the same order or refusal) is marked with
``@self_keyed`` and passed through: storing the response again would cost four statements and
two transactions for nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import LargeBinary, String, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, mapped_column
from starlette.concurrency import run_in_threadpool
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seamline.api.middleware import header, replay_body
from seamline.api.problems import problem_response
from seamline.auth.service import authenticate, hash_token, token_from_authorization
from seamline.db.base import Base, BigIntPK
from seamline.db.dialect import insert_ignoring_conflict
from seamline.db.engine import Database
from seamline.kit import clock
from seamline.kit.crypto import SecretBox
from seamline.kit.errors import Unauthenticated
from seamline.observability import metrics

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REPLAY_HEADER = "Idempotent-Replayed"
_KEPT_HEADERS = (b"content-type", b"location")
# Responses that mean "nothing was executed": the key is released so the client may retry it.
_NOT_EXECUTED = frozenset({400, 401, 403, 413, 415, 422, 429})


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12))
    response_status: Mapped[int | None]
    response_headers: Mapped[dict[str, Any] | None]
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)

    __table_args__ = (UniqueConstraint("scope", "key"),)


PASS_THROUGH = object()  # no valid key: the request runs without idempotency (and gets its 401)
_SELF_KEYED = "__seamline_self_keyed__"
INVALID_KEY = "invalid_idempotency_key"
INVALID_KEY_DETAIL = "Idempotency-Key must be 1 to 255 printable characters."


def valid_key(key: str) -> bool:
    return 1 <= len(key) <= 255 and key.isprintable()


F = TypeVar("F", bound=Callable[..., Any])


def self_keyed(endpoint: F) -> F:
    """Mark a route whose service is idempotent by the ``Idempotency-Key`` itself: the
    middleware lets its requests through untouched."""
    setattr(endpoint, _SELF_KEYED, True)
    return endpoint


def self_keyed_routes(app: Any, router: Any, *, prefix: str) -> None:
    """Note which of ``router``'s routes (included under ``prefix``) are ``@self_keyed``, as
    (methods, full path pattern) on ``app.state``, where the middleware finds them."""
    found: list[tuple[frozenset[str], re.Pattern[str]]] = getattr(
        app.state, "self_keyed_routes", []
    )
    for route in router.routes:
        if getattr(getattr(route, "endpoint", None), _SELF_KEYED, False):
            pattern, _, _ = compile_path(prefix + route.path)
            found.append((frozenset(route.methods or ()), pattern))
    app.state.self_keyed_routes = found


def _request_hash(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(
        f"{scope['method']} {scope['path']}?{scope.get('query_string', b'').decode()}\n".encode()
    )
    digest.update(body)
    return digest.hexdigest()


class IdempotencyMiddleware:
    def __init__(
        self, app: ASGIApp, db: Database, *, box: SecretBox, ttl: timedelta, lock: timedelta
    ) -> None:
        self.app = app
        self.db = db
        self.box = box
        self.ttl = ttl
        self.lock = lock

    def _is_self_keyed(self, scope: Scope) -> bool:
        state = getattr(scope.get("app"), "state", None)
        routes = getattr(state, "self_keyed_routes", ())
        method, path = scope.get("method"), str(scope.get("path", ""))
        return any(method in m and p.match(path) for m, p in routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = header(scope, b"idempotency-key") if scope["type"] == "http" else None
        if (
            key is None
            or scope.get("method") not in MUTATING
            or not str(scope.get("path", "")).startswith("/api/")
            or self._is_self_keyed(scope)
        ):
            await self.app(scope, receive, send)
            return
        if not valid_key(key):
            response = problem_response(400, INVALID_KEY, INVALID_KEY_DETAIL)
            await response(scope, receive, send)
            return
        body: bytes = scope.get("seamline.body", b"")
        token = token_from_authorization(header(scope, b"authorization") or "")
        if token is None:
            await self.app(scope, receive, send)
            return
        caller = hash_token(token)
        fingerprint = _request_hash(scope, body)
        verdict = await run_in_threadpool(self._begin, caller, token, key, fingerprint)
        if verdict is PASS_THROUGH:
            await self.app(scope, replay_body(body, receive), send)
            return
        if verdict is not None:
            await verdict(scope, receive, send)
            return

        # The response is held back until it is stored: a client that retries the moment it
        # sees the answer must get the replay, never a 409 for a request that has finished.
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        try:
            await self.app(scope, replay_body(body, receive), capture)
        except BaseException:
            await run_in_threadpool(self._release, caller, key)
            raise
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        status = int(start["status"]) if start else 500
        if status >= 500 or 300 <= status < 400 or status in _NOT_EXECUTED:
            await run_in_threadpool(self._release, caller, key)
        else:
            assert start is not None
            kept = {
                k.decode("latin-1"): v.decode("latin-1")
                for k, v in start.get("headers", [])
                if k.lower() in _KEPT_HEADERS
            }
            content = b"".join(
                m.get("body", b"") for m in messages if m["type"] == "http.response.body"
            )
            await run_in_threadpool(self._finish, caller, key, status, kept, content)
        for message in messages:
            await send(message)

    # -- storage (runs in a thread: the database calls are blocking) ------------------------
    def _begin(self, caller: str, token: str, key: str, fingerprint: str) -> Any:
        now = clock.now()
        with self.db.transaction() as session:
            try:
                # Nothing stored is replayed to a key that is unknown or revoked since.
                authenticate(session, token)
            except Unauthenticated:
                return PASS_THROUGH
            session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.scope == caller,
                    IdempotencyRecord.key == key,
                    IdempotencyRecord.expires_at < now,
                )
            )
            values = {
                "scope": caller,
                "key": key,
                "request_hash": fingerprint,
                "status": "running",
                "locked_until": now + self.lock,
                "created_at": now,
                "expires_at": now + self.ttl,
            }
            if insert_ignoring_conflict(session, IdempotencyRecord, values, on=["scope", "key"]):
                return None
            record = session.scalars(
                select(IdempotencyRecord)
                .where(IdempotencyRecord.scope == caller, IdempotencyRecord.key == key)
                .with_for_update()
            ).one()
            if record.request_hash != fingerprint:
                return problem_response(
                    422,
                    "idempotency_key_reused",
                    "This Idempotency-Key was used with a different request.",
                )
            if record.status == "running":
                if record.locked_until and record.locked_until > now:
                    return problem_response(
                        409,
                        "idempotency_key_in_use",
                        "A request with this Idempotency-Key is still being processed.",
                        headers={"Retry-After": "1"},
                    )
                # The first attempt died without an answer; this one takes over.
                record.locked_until = now + self.lock
                return None
            metrics.IDEMPOTENT_REPLAYS.inc()
            return _stored_response(record, self.box)

    def _finish(
        self, caller: str, key: str, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        with self.db.transaction() as session:
            record = session.scalars(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.scope == caller, IdempotencyRecord.key == key
                )
            ).one_or_none()
            if record is None:
                return
            record.status = "done"
            record.response_status = status
            record.response_headers = headers
            # Sealed: a stored response may hold a secret shown once (a webhook signing secret).
            record.response_body = self.box.seal_bytes(body)
            record.locked_until = None

    def _release(self, caller: str, key: str) -> None:
        with self.db.transaction() as session:
            session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.scope == caller,
                    IdempotencyRecord.key == key,
                    IdempotencyRecord.status == "running",
                )
            )


def _stored_response(record: IdempotencyRecord, box: SecretBox) -> Any:
    from starlette.responses import Response

    headers = dict(record.response_headers or {})
    headers[REPLAY_HEADER] = "true"
    return Response(
        content=box.open_bytes(record.response_body) if record.response_body else b"",
        status_code=record.response_status or 200,
        headers=headers,
    )


def purge_expired(db: Database) -> int:
    """Delete keys past their retention (called by the worker's housekeeping)."""
    with db.transaction() as session:
        result = session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < clock.now())
        )
        return int(getattr(result, "rowcount", 0) or 0)
