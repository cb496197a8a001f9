"""Every operation names one scope in the document and enforces exactly that scope.

The walk is over ``app.openapi()``, so a route added later is checked without editing this file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from seamline.auth import service as keys
from seamline.auth.models import ApiKey
from seamline.auth.scopes import EVENT_SCOPES, PUBLISHABLE_SCOPES, SCOPES
from seamline.db.engine import Database
from seamline.kit.clock import FrozenClock

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
DUMMY_ID = "dummy_0000000000"
MakeKey = Callable[..., str]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    scope: str
    has_body: bool

    @property
    def url(self) -> str:
        return re.sub(r"\{[^}]+\}", DUMMY_ID, self.path)

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path} [{self.scope}]"


def operations(app: FastAPI) -> list[Operation]:
    found = []
    for path, item in app.openapi()["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                found.append(
                    Operation(method, path, op.get("x-required-scope", ""), "requestBody" in op)
                )
    return found


def call(client: TestClient, op: Operation, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    # A minimal, well-formed body: authentication is decided before the body is validated.
    body: dict[str, Any] | None = {} if op.has_body else None
    return client.request(op.method.upper(), op.url, json=body, headers=headers)


def assert_problem(response: Any, status: int, code: str, op: Operation) -> None:
    assert response.status_code == status, f"{op}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), op
    body = response.json()
    assert body["status"] == status, op
    assert body["code"] == code, f"{op}: {body}"


def revoke(db: Database, token: str) -> None:
    with db.transaction() as session:
        key = session.query(ApiKey).filter_by(token_hash=keys.hash_token(token)).one()
        keys.revoke_key(session, key.id)


# -- the document ----------------------------------------------------------------------------


def test_every_operation_declares_a_known_scope(app: FastAPI) -> None:
    ops = operations(app)
    assert len(ops) >= 4
    for op in ops:
        assert op.scope in SCOPES, f"{op} has no x-required-scope from auth.scopes.SCOPES"
        doc_op = app.openapi()["paths"][op.path][op.method]
        assert doc_op["security"] == [{"apiKey": [op.scope]}], op


def test_security_scheme_is_bearer(app: FastAPI) -> None:
    scheme = app.openapi()["components"]["securitySchemes"]["apiKey"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}


# -- enforcement, operation by operation ----------------------------------------------------


def test_no_key_is_401(app: FastAPI, client: TestClient, subtests: pytest.Subtests) -> None:
    for op in operations(app):
        with subtests.test(msg=str(op)):
            response = call(client, op, None)
            assert_problem(response, 401, "missing_api_key", op)
            assert response.headers["www-authenticate"].startswith("Bearer"), op


def test_unknown_key_is_401(app: FastAPI, client: TestClient, subtests: pytest.Subtests) -> None:
    for op in operations(app):
        with subtests.test(msg=str(op)):
            response = call(client, op, "sk_this-key-was-never-issued")
            assert_problem(response, 401, "invalid_api_key", op)
            assert response.headers["www-authenticate"].startswith("Bearer"), op


def test_every_scope_but_the_required_one_is_403(
    app: FastAPI, client: TestClient, make_key: MakeKey, subtests: pytest.Subtests
) -> None:
    for op in operations(app):
        with subtests.test(msg=str(op)):
            token = make_key(scopes=sorted(set(SCOPES) - {op.scope}))
            response = call(client, op, token)
            assert_problem(response, 403, "insufficient_scope", op)
            assert op.scope in response.json()["detail"]


def test_the_required_scope_alone_is_enough(
    app: FastAPI, client: TestClient, make_key: MakeKey, subtests: pytest.Subtests
) -> None:
    # The declared scope is the enforced one: holding just it gets past authorization
    # (the dummy id or the empty body then fail for their own reasons: 404 or 422).
    for op in operations(app):
        with subtests.test(msg=str(op)):
            response = call(client, op, make_key(scopes=[op.scope]))
            assert response.status_code not in (401, 403, 500), f"{op}: {response.text}"


def test_revoked_key_is_401(
    app: FastAPI, client: TestClient, db: Database, make_key: MakeKey, subtests: pytest.Subtests
) -> None:
    token = make_key(scopes=sorted(SCOPES))
    op = next(o for o in operations(app) if o.method == "get")
    assert call(client, op, token).status_code not in (401, 403)
    revoke(db, token)
    for op in operations(app):
        with subtests.test(msg=str(op)):
            assert_problem(call(client, op, token), 401, "invalid_api_key", op)


# -- key kinds -------------------------------------------------------------------------------


def test_publishable_key_cannot_write_channels(
    app: FastAPI, client: TestClient, make_key: MakeKey, subtests: pytest.Subtests
) -> None:
    token = make_key(kind="publishable")
    assert token.startswith("pk_")
    writes = [op for op in operations(app) if op.scope == "channels:write"]
    assert writes
    for op in writes:
        with subtests.test(msg=str(op)):
            assert_problem(call(client, op, token), 403, "insufficient_scope", op)
    response = client.post(
        "/api/v1/channels",
        json={"kind": "web", "name": "Web", "handle": "web"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403


def test_publishable_key_reaches_only_storefront_scopes(
    app: FastAPI, client: TestClient, make_key: MakeKey, subtests: pytest.Subtests
) -> None:
    token = make_key(kind="publishable")
    for op in operations(app):
        if op.scope in PUBLISHABLE_SCOPES:
            continue
        with subtests.test(msg=str(op)):
            assert_problem(call(client, op, token), 403, "insufficient_scope", op)


def test_publishable_key_widened_in_the_database_is_still_capped(
    client: TestClient, db: Database, make_key: MakeKey
) -> None:
    # Defence in depth: the kind caps scopes when the key is used, not only when it is made.
    token = make_key(kind="publishable")
    with db.transaction() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.token_hash == keys.hash_token(token))
            .values(scopes=sorted(SCOPES))
        )
    response = client.post(
        "/api/v1/channels",
        json={"kind": "web", "name": "Web", "handle": "web"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


@pytest.mark.parametrize("scope", ["channels:write", "channels:read", "catalog:write"])
def test_publishable_key_cannot_be_given_wider_scopes(make_key: MakeKey, scope: str) -> None:
    from seamline.kit.errors import Unprocessable

    with pytest.raises(Unprocessable) as raised:
        make_key(kind="publishable", scopes=[scope])
    assert raised.value.status == 422
    assert [e.code for e in raised.value.errors] == ["scope_not_allowed"]


def test_event_key_only_sends_events(
    app: FastAPI, client: TestClient, make_key: MakeKey, subtests: pytest.Subtests
) -> None:
    from seamline.kit.errors import Unprocessable

    token = make_key(kind="event")
    assert token.startswith("ek_")
    for scope in sorted(set(SCOPES) - EVENT_SCOPES):
        with subtests.test(msg=f"ek_ with {scope}"), pytest.raises(Unprocessable):
            make_key(kind="event", scopes=[scope])
    for op in operations(app):
        if op.scope in EVENT_SCOPES:
            continue
        with subtests.test(msg=str(op)):
            assert_problem(call(client, op, token), 403, "insufficient_scope", op)


# -- how the key is sent ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("Bearer {token}", 200),
        ("bearer {token}", 200),
        ("Basic {basic}", 200),  # the key as the HTTP Basic username, like Stripe
        ("Bearer", 401),
        ("Bearer ", 401),
        ("Token {token}", 401),
        ("Basic not-base64!", 401),
        ("{token}", 401),
    ],
)
def test_authorization_header_forms(
    client: TestClient, api_key: str, header: str, status: int
) -> None:
    import base64

    basic = base64.b64encode(f"{api_key}:".encode()).decode()
    value = header.format(token=api_key, basic=basic)
    response = client.get("/api/v1/channels", headers={"Authorization": value})
    assert response.status_code == status, response.text
    if status == 401:
        assert response.json()["code"] in ("missing_api_key", "invalid_api_key")


# -- last use ---------------------------------------------------------------------------------


def _last_used(db: Database, token: str) -> datetime | None:
    with db.transaction(readonly=True) as session:
        key = session.query(ApiKey).filter_by(token_hash=keys.hash_token(token)).one()
        return key.last_used_at


def test_last_used_is_recorded_at_most_once_a_minute(
    client: TestClient, db: Database, make_key: MakeKey, clock: FrozenClock
) -> None:
    token = make_key()
    headers = {"Authorization": f"Bearer {token}"}
    assert _last_used(db, token) is None

    assert client.get("/api/v1/channels", headers=headers).status_code == 200
    first = _last_used(db, token)
    assert first == clock()

    clock.advance(seconds=59)
    assert client.get("/api/v1/channels", headers=headers).status_code == 200
    assert _last_used(db, token) == first  # throttled: reads do not turn into writes

    clock.advance(seconds=2)
    assert client.get("/api/v1/channels", headers=headers).status_code == 200
    assert _last_used(db, token) == clock()


def test_last_used_counts_authenticated_calls_only(
    client: TestClient, db: Database, make_key: MakeKey
) -> None:
    token = make_key(scopes=["channels:read"])
    response = client.post(
        "/api/v1/channels",
        json={"kind": "web", "name": "Web", "handle": "web"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403
    # The key authenticated (so its use is recorded) even though the scope was missing.
    assert _last_used(db, token) is not None
    revoke(db, token)
    before = _last_used(db, token)
    response = client.get("/api/v1/channels", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert _last_used(db, token) == before
