"""Errors are RFC 9457 problem documents with stable codes and field paths; nothing leaks.

Also the system routes around the API: health, readiness, metrics, docs and the home page.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seamline.api.app import create_app
from seamline.channels.models import Channel
from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.runtime import Runtime
from seamline.settings import Settings

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "instance", "request_id", "errors"}
CHANNELS = "/api/v1/channels"


def channel(handle: str = "web-eu", **extra: Any) -> dict[str, Any]:
    return {"kind": "web", "name": "Web EU", "handle": handle, **extra}


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """Check a problem document (from TestClient or httpx) and return it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) == PROBLEM_KEYS, body
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["type"] == f"/problems/{code}"
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    assert body["title"]
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    for error in body["errors"]:
        assert set(error) == {"path", "message", "code"}, error
    return body


def counts(db: Database) -> tuple[int, int]:
    with db.transaction(readonly=True) as session:
        channels = session.scalar(select(func.count()).select_from(Channel))
        events = session.scalar(select(func.count()).select_from(OutboxEvent))
    return int(channels or 0), int(events or 0)


# -- the shape and the field paths ------------------------------------------------------------


def test_validation_problem_shape_and_paths(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post(CHANNELS, json={"kind": "web", "handle": "Not A Slug!"}, headers=auth)
    body = assert_problem(response, 422, "validation_failed")
    assert body["instance"] == CHANNELS
    paths = {e["path"]: e["code"] for e in body["errors"]}
    assert paths == {"body.name": "missing", "body.handle": "string_pattern_mismatch"}


def test_unknown_fields_are_refused_with_their_path(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    response = client.post(CHANNELS, json=channel(price=100, active=False), headers=auth)
    body = assert_problem(response, 422, "validation_failed")
    paths = {e["path"]: e["code"] for e in body["errors"]}
    assert paths == {"body.price": "extra_forbidden", "body.active": "extra_forbidden"}
    created = client.post(CHANNELS, json=channel(), headers=auth).json()
    response = client.patch(f"{CHANNELS}/{created['id']}", json={"handle": "x"}, headers=auth)
    body = assert_problem(response, 422, "validation_failed")
    assert [(e["path"], e["code"]) for e in body["errors"]] == [("body.handle", "extra_forbidden")]
    assert counts(db) == (1, 1)


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"kind": 7, "name": "Web", "handle": "web"}, "body.kind"),
        ({"kind": "fax", "name": "Web", "handle": "web"}, "body.kind"),
        ({"kind": "web", "name": ["Web"], "handle": "web"}, "body.name"),
        ({"kind": "web", "name": "Web", "handle": 12}, "body.handle"),
        ({"kind": "web", "name": "Web", "handle": "web", "attributes": []}, "body.attributes"),
        ({"kind": "web", "name": "Web", "handle": "web", "location_id": {}}, "body.location_id"),
        ({"kind": "web", "name": "  ", "handle": "web"}, "body.name"),
        ({"kind": "web", "name": "a\x00b", "handle": "web"}, "body.name"),
    ],
)
def test_wrong_types_name_the_field(
    client: TestClient, auth: dict[str, str], payload: dict[str, Any], path: str
) -> None:
    body = assert_problem(
        client.post(CHANNELS, json=payload, headers=auth), 422, "validation_failed"
    )
    assert path in {e["path"] for e in body["errors"]}, body


def test_query_parameters_have_paths_too(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get(f"{CHANNELS}?limit=lots&kind=fax", headers=auth)
    body = assert_problem(response, 422, "validation_failed")
    assert {e["path"] for e in body["errors"]} == {"query.limit", "query.kind"}


def test_body_that_is_not_an_object(client: TestClient, auth: dict[str, str]) -> None:
    body = assert_problem(client.post(CHANNELS, json=[1], headers=auth), 422, "validation_failed")
    assert [e["path"] for e in body["errors"]] == ["body"]


def test_malformed_json_is_400_with_position(client: TestClient, auth: dict[str, str]) -> None:
    headers = {**auth, "Content-Type": "application/json"}
    response = client.post(CHANNELS, content=b'{"kind": "web",,}', headers=headers)
    body = assert_problem(response, 400, "malformed_json")
    assert body["errors"][0]["path"] == "body"
    assert "position" in body["errors"][0]["message"]


# -- not found, not allowed ---------------------------------------------------------------------


def test_unknown_route_is_404(client: TestClient, auth: dict[str, str]) -> None:
    body = assert_problem(client.get("/api/v1/nothing-here", headers=auth), 404, "not_found")
    assert body["instance"] == "/api/v1/nothing-here"


@pytest.mark.parametrize(
    "channel_id", ["chn_01jzzzzzzzzzzzzzzzzzzzzzzz", "nope", "x" * 500, "a%00b", "%F0%9F%9A%80"]
)
def test_unknown_id_is_404(client: TestClient, auth: dict[str, str], channel_id: str) -> None:
    url = f"{CHANNELS}/{channel_id}"
    assert_problem(client.get(url, headers=auth), 404, "channel_not_found")
    response = client.patch(url, json={"name": "x"}, headers=auth)
    assert_problem(response, 404, "channel_not_found")


def test_method_not_allowed_is_405_and_lists_the_methods(
    client: TestClient, auth: dict[str, str]
) -> None:
    response = client.delete(CHANNELS, headers=auth)
    body = assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"
    assert "GET, POST" in body["detail"]
    response = client.put(f"{CHANNELS}/chn_x", json={}, headers=auth)
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, PATCH"


# -- body limits --------------------------------------------------------------------------------


def test_body_over_the_limit_with_content_length_is_413(
    client: TestClient, auth: dict[str, str], settings: Settings, db: Database
) -> None:
    padding = "x" * settings.max_body_bytes
    response = client.post(CHANNELS, json=channel(name=padding), headers=auth)
    body = assert_problem(response, 413, "payload_too_large")
    assert str(settings.max_body_bytes) in body["detail"]
    assert counts(db) == (0, 0)


def test_body_at_the_limit_is_read(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    raw = b'{"kind": "web", "name": "Web", "handle": "web"}'
    padded = raw + b" " * (settings.max_body_bytes - len(raw))  # JSON allows trailing space
    headers = {**auth, "Content-Type": "application/json"}
    assert client.post(CHANNELS, content=padded, headers=headers).status_code == 201


def test_streamed_body_without_length_over_the_limit_is_413(
    live_server: str, auth: dict[str, str], settings: Settings, db: Database
) -> None:
    chunk = b" " * 65_536
    chunks = settings.max_body_bytes // len(chunk) + 8
    sent = {"chunks": 0}

    def body() -> Iterator[bytes]:
        yield b'{"kind": "web", "name": "Web", "handle": "web"'
        for _ in range(chunks):
            sent["chunks"] += 1
            yield chunk
        yield b"}"

    headers = {**auth, "Content-Type": "application/json"}
    with (
        httpx.Client(base_url=live_server, timeout=10) as http,
        http.stream("POST", CHANNELS, content=body(), headers=headers) as response,
    ):
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        response.read()
    assert_problem(response, 413, "payload_too_large")
    assert counts(db) == (0, 0)


# -- content ------------------------------------------------------------------------------------


def test_unicode_and_emoji_round_trip(client: TestClient, auth: dict[str, str]) -> None:
    name = "Café Zürich — 東京 🛍️🚀 Ωmega"
    attributes = {"greeting": "¡Hola! 👋", "日本": ["ü", "😀"], "nested": {"ß": 1.5}}
    created = client.post(CHANNELS, json=channel(name=name, attributes=attributes), headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == name
    fetched = client.get(f"{CHANNELS}/{created.json()['id']}", headers=auth).json()
    assert fetched["name"] == name
    assert fetched["attributes"] == attributes
    listed = client.get(CHANNELS, headers=auth).json()["data"]
    assert [c["name"] for c in listed] == [name]


def test_huge_attributes_are_422_and_write_nothing(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    huge = {f"k{i}": "v" * 100 for i in range(200)}  # about 21 KB of JSON
    response = client.post(CHANNELS, json=channel(attributes=huge), headers=auth)
    body = assert_problem(response, 422, "validation_failed")
    assert [(e["path"], e["code"]) for e in body["errors"]] == [("body.attributes", "too_large")]
    assert counts(db) == (0, 0)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": 1e999}',
        b'{"a": "x\\u0000y"}',
        b'{"a\\u0000": 1}',
        b'{"a": "\\udc00"}',
        b'{"a": ' + b'{"b": ' * 40 + b"1" + b"}" * 40 + b"}",
    ],
    ids=["nan", "infinity", "overflow", "nul-text", "nul-key", "lone-surrogate", "too-deep"],
)
def test_attributes_the_databases_cannot_store_are_422(
    client: TestClient, auth: dict[str, str], db: Database, raw: bytes
) -> None:
    content = b'{"kind": "web", "name": "Web", "handle": "web", "attributes": ' + raw + b"}"
    headers = {**auth, "Content-Type": "application/json"}
    body = assert_problem(
        client.post(CHANNELS, content=content, headers=headers), 422, "validation_failed"
    )
    assert [e["path"] for e in body["errors"]] == ["body.attributes"]
    assert counts(db) == (0, 0)


def test_duplicate_handle_is_409(client: TestClient, auth: dict[str, str], db: Database) -> None:
    assert client.post(CHANNELS, json=channel(), headers=auth).status_code == 201
    response = client.post(CHANNELS, json=channel(name="Other"), headers=auth)
    body = assert_problem(response, 409, "channel_handle_taken")
    assert [(e["path"], e["code"]) for e in body["errors"]] == [("body.handle", "taken")]
    assert counts(db) == (1, 1)


def test_concurrent_creates_of_one_handle_one_wins(
    live_server: str, auth: dict[str, str], db: Database
) -> None:
    clients = 12
    barrier = threading.Barrier(clients)

    def create(i: int) -> httpx.Response:
        with httpx.Client(base_url=live_server, timeout=30) as http:
            barrier.wait()
            return http.post(CHANNELS, json=channel("race", name=f"Racer {i}"), headers=auth)

    with ThreadPoolExecutor(clients) as pool:
        responses = list(pool.map(create, range(clients)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (clients - 1), [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "channel_handle_taken")
    assert counts(db) == (1, 1)


# -- unexpected errors --------------------------------------------------------------------------


SECRET_TEXT = "db password is hunter2"


@pytest.fixture
def exploding_client(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    """A fresh app with a test-only route that fails the way a bug would."""
    app = create_app(settings, runtime=runtime)

    def boom() -> None:
        raise RuntimeError(SECRET_TEXT)

    app.add_api_route("/boom", boom, methods=["GET", "POST"], include_in_schema=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unhandled_exception_is_a_bare_500(exploding_client: TestClient, method: str) -> None:
    response = exploding_client.request(method, "/boom", json={} if method == "POST" else None)
    body = assert_problem(response, 500, "internal_error")
    text = response.text
    for leak in (SECRET_TEXT, "RuntimeError", "Traceback", 'File "', ".py", "boom"):
        assert leak not in text.replace('"instance":"/boom"', ""), leak
    assert body["errors"] == []


def test_the_app_keeps_serving_after_a_500(exploding_client: TestClient) -> None:
    assert exploding_client.get("/boom").status_code == 500
    assert exploding_client.get("/healthz").status_code == 200


# -- request ids --------------------------------------------------------------------------------


@pytest.mark.parametrize("rid", ["abc-123", "trace.id:42_x", "A" * 128])
def test_safe_request_id_is_echoed(client: TestClient, rid: str) -> None:
    response = client.get("/api/v1/channels", headers={"X-Request-Id": rid})
    assert response.headers["x-request-id"] == rid
    assert response.json()["request_id"] == rid


@pytest.mark.parametrize("rid", ["", "has space", "<script>", "A" * 129, "semi;colon", "é"])
def test_unsafe_request_id_is_replaced(client: TestClient, rid: str) -> None:
    response = client.get("/api/v1/channels", headers=[(b"X-Request-Id", rid.encode())])
    generated = response.headers["x-request-id"]
    assert generated != rid
    assert re.fullmatch(r"req_[0-9a-z]{26}", generated)
    assert response.json()["request_id"] == generated


def test_request_id_is_generated_per_request(client: TestClient) -> None:
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]
    assert first != second
    assert first.startswith("req_")


# -- system routes --------------------------------------------------------------------------------


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_the_database(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}


def test_readyz_is_503_when_the_database_is_gone(
    settings: Settings, runtime: Runtime, app: FastAPI
) -> None:
    with TestClient(app, raise_server_exceptions=False) as c:
        runtime.db.engine.dispose()
        original = runtime.db.engine.connect

        def broken() -> Any:
            raise OSError("connection refused")

        runtime.db.engine.connect = broken  # type: ignore[method-assign,unused-ignore]
        try:
            response = c.get("/readyz")
        finally:
            runtime.db.engine.connect = original  # type: ignore[method-assign,unused-ignore]
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unavailable"
    assert "refused" not in response.text


def test_metrics_count_requests_by_route_template(client: TestClient, auth: dict[str, str]) -> None:
    client.get(f"{CHANNELS}/chn_doesnotexist", headers=auth)
    text = client.get("/metrics").text
    assert "seamline_http_requests_total" in text
    assert re.search(
        r'seamline_http_requests_total\{method="GET",route="/api/v1/channels/\{channel_id\}",'
        r'status="404"\} [1-9]',
        text,
    ), text
    assert "chn_doesnotexist" not in text  # ids never become label values


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (tag, name) in {("script", "src"), ("link", "href"), ("img", "src")}:
                self.urls.append(value)


def test_docs_are_served_offline(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    parser = _Assets()
    parser.feed(response.text)
    assert len(parser.urls) >= 2, parser.urls
    for url in parser.urls:
        assert url.startswith("/_docs/"), f"{url} is not served by Seamline"
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0
    assert not re.search(r"https?://", response.text), "the page names a remote host"
    assert '"validatorUrl": null' in response.text  # no badge from validator.swagger.io
    assert client.get("/openapi.json").status_code == 200


def test_home_page_has_a_content_security_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src" not in csp or "'unsafe-inline'" not in csp.split("script-src")[1]


def test_system_routes_are_outside_the_api_document(app: FastAPI) -> None:
    paths = set(app.openapi()["paths"])
    assert not paths & {"/healthz", "/readyz", "/metrics", "/docs", "/"}
