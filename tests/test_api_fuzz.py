"""Property-based fuzzing of the WHOLE OpenAPI document, in-process, with Schemathesis.

Every operation in ``app.openapi()`` is fuzzed, so a route added later is covered without
touching this file. The key holds every scope, so requests reach validation and the handlers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.checks import CheckFunction
from schemathesis.specs.openapi.checks import negative_data_rejection
from schemathesis.specs.openapi.schemas import OpenApiSchema
from sqlalchemy import delete

from seamline.api.idempotency import IdempotencyRecord
from seamline.auth.scopes import SCOPES
from seamline.db.engine import Database

# Small enough that the whole document runs well under a minute on two cores. The second
# database runs the same API code, so it gets fewer examples per operation: enough to reach
# what only PostgreSQL refuses (NUL in text, out-of-range integers), at a third of the time.
MAX_EXAMPLES = 25
MAX_EXAMPLES_POSTGRES = 10
COMMON_STATUSES = ("400", "401", "403", "413", "422", "500")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
BIGINT_MAX = 2**63 - 1


def _config(token: str, mode: str, max_examples: int = MAX_EXAMPLES) -> schemathesis.Config:
    # Locally every run explores new inputs. In CI the run is seeded, so a red build is
    # reproducible (SEAMLINE_FUZZ_SEED) instead of luck; what local runs find gets fixed.
    seeded = bool(os.environ.get("CI"))
    extra: dict[str, Any] = {"seed": int(os.environ.get("SEAMLINE_FUZZ_SEED", "20261123"))}
    return schemathesis.Config.from_dict(
        {
            **(extra if seeded else {}),
            "headers": {"Authorization": f"Bearer {token}"},
            "generation": {"max-examples": max_examples, "mode": mode, "deterministic": seeded},
            "phases": {"coverage": {"enabled": False}},
            "operations": [
                # A CSV body is a string to JSON Schema: whether its rows are valid cannot be
                # written into the document, so a well-formed string may rightly get 422.
                *(
                    {
                        "include-path": path,
                        "checks": {
                            "positive_data_acceptance": {
                                "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
                            }
                        },
                    }
                    for path in ("/api/v1/catalog/imports", "/api/v1/customers/imports")
                ),
                # Rules between fields JSON Schema cannot state: a transfer's two locations
                # must differ and its variants be distinct; a reservation names a reference and
                # variant once; "pick up near me" needs a point or an imported postcode; a
                # staff merge needs two customers that may be one.
                *(
                    {
                        "include-path": path,
                        "checks": {
                            "positive_data_acceptance": {
                                "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
                            }
                        },
                    }
                    for path in (
                        "/api/v1/stock/transfers",
                        "/api/v1/reservations",
                        "/api/v1/availability/pickup",
                        # two profiles of one customer; two accounts (unique kinds)
                        "/api/v1/profiles/{profile_id}/merge",
                        "/api/v1/duplicate-suggestions/decisions",
                        # consent by identifier: a real email or phone number, no future date
                        "/api/v1/consent",
                    )
                ),
                # Pricing configuration is judged by the pricing engine's own validation, whose
                # rules tie fields together: a percentage is at most 10000 basis points, a fixed
                # amount or a minimum needs its currency, ends_at follows starts_at (and a date
                # must survive conversion to UTC), targets go with applies_to and must exist,
                # bands and free_over belong to their rate kind, a combinable tax rate names a
                # region; codes and (country, region, name) are unique (409).
                *(
                    {
                        "include-path": path,
                        "checks": {
                            "positive_data_acceptance": {
                                "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
                            }
                        },
                    }
                    for path in (
                        "/api/v1/promotions",
                        "/api/v1/promotions/{promotion_id}",
                        "/api/v1/promotions/{promotion_id}/issue-code",
                        "/api/v1/tax-rates",
                        "/api/v1/shipping-rates",
                        "/api/v1/shipping-rates/{shipping_rate_id}",
                    )
                ),
                # Checkout and order actions: the cart's state, the stock and the payment
                # decide (402 declined, 409 not open / out of stock / wrong state, 422 tenders
                # that do not cover the total, a pick-up code that does not match).
                {
                    "include-path-regex": r"^/api/v1/(carts/[^/]+/checkout$|orders|carrier-events)",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "402", "403", "404", "409", "422"]
                        }
                    },
                },
                # Carts and saved lists: `If-Match` names a version the fuzzer cannot know
                # (412), and rules between fields (an owner; one of variant_id and barcode;
                # pick-up with its store; ?profile_id or ?email) or across requests (a line's
                # 999 units) answer 422.
                {
                    "include-path-regex": r"^/api/v1/(saved-lists|carts(?!/[^/]+/checkout$))",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "403", "404", "409", "412", "422"]
                        }
                    },
                },
                # Segment-compatible calls: rules JSON Schema cannot state (a call's 32 KB
                # limit, NUL characters, `userId: null` meeting "required") answer 400 as
                # Segment does; a batch keeps its valid calls and reports the others, so a
                # schema-violating batch item is rightly accepted with 200 (negative data is
                # excluded for every operation below anyway).
                *(
                    {
                        "include-path": f"/v1/{call}",
                        "checks": {
                            "positive_data_acceptance": {
                                "expected-statuses": ["2xx", "400", "401", "403"]
                            }
                        },
                    }
                    for call in (
                        "track",
                        "identify",
                        "page",
                        "screen",
                        "group",
                        "alias",
                        "batch",
                        "import",
                    )
                ),
                # An endless Server-Sent Events stream: a valid request never finishes, so the
                # in-process client would wait forever. Its refusals (401/403/422) are tested
                # in test_stock_stream.py and by the scope walk.
                {"include-path": "/api/v1/stock/stream", "enabled": False},
            ],
        }
    )


@pytest.fixture
def fuzz_token(make_key: Callable[..., str]) -> str:
    """A secret key holding every scope, so requests reach validation and the handlers."""
    return make_key(scopes=sorted(SCOPES), name="fuzz")


@pytest.fixture
def fuzz_schema(
    request: pytest.FixtureRequest, app: FastAPI, fuzz_token: str, backend: str
) -> OpenApiSchema:
    """The app on a fresh, migrated database (the ``app`` fixture), loaded in-process."""
    # Schemathesis 4.32's lazy loader reads and rewrites ``node._nodeid`` to label each
    # operation; pytest 9 keeps the id in ``_id`` and has no ``_nodeid`` any more, so the
    # loader crashes with AttributeError. Seed the attribute it expects (labels only).
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    examples = MAX_EXAMPLES_POSTGRES if backend == "postgres" else MAX_EXAMPLES
    return schemathesis.openapi.from_asgi(
        "/openapi.json", app, config=_config(fuzz_token, "all", examples)
    )


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@schema.parametrize()
def test_every_operation_conforms(
    case: schemathesis.Case[Any], fuzz_token: str, db: Database, backend: str
) -> None:
    # Idempotency keys are state shared between requests: a key the fuzzer happens to reuse
    # with another body is rightly refused (422). Each generated case must stand alone, so
    # forget earlier keys; their semantics are tested in test_idempotency.py.
    with db.transaction() as session:
        session.execute(delete(IdempotencyRecord))
    # ``negative_data_rejection`` is excluded on purpose: pydantic's lax mode accepts some
    # values the JSON Schema calls invalid (``false`` for an integer, ``"1"`` for a number,
    # surrounding spaces it strips), and the check reports them as "negative data accepted"
    # although the API converts them safely. Every other check stays on: no 5xx, documented
    # status codes, content types, response bodies and headers, valid data accepted, and
    # authentication enforced.
    excluded: list[CheckFunction] = [negative_data_rejection]
    case.call_and_validate(
        # The key is also in the config; passing it here marks it as explicit credentials,
        # so ``ignored_auth`` probes each operation without it and with a bogus one.
        headers={"Authorization": f"Bearer {fuzz_token}"},
        excluded_checks=excluded,
    )


# -- plain tests about the document and malformed input -------------------------------------


def _operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    doc = app.openapi()
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]


def test_document_lists_the_api(app: FastAPI) -> None:
    ops = {(method, path) for path, method, _ in _operations(app)}
    assert ("post", "/api/v1/channels") in ops
    assert ("get", "/api/v1/channels/{channel_id}") in ops
    assert ("get", "/api/v1/events") in ops


def test_every_operation_declares_common_problems(app: FastAPI) -> None:
    for path, method, op in _operations(app):
        responses = op["responses"]
        for status in COMMON_STATUSES:
            assert status in responses, f"{method.upper()} {path} does not declare {status}"
            assert responses[status]["content"] == PROBLEM_CONTENT, f"{method} {path} {status}"
        if "{" in path:
            assert responses["404"]["content"] == PROBLEM_CONTENT, f"{method} {path} 404"
        if method in ("post", "put", "patch", "delete"):
            assert responses["409"]["content"] == PROBLEM_CONTENT, f"{method} {path} 409"


def test_problem_schema_is_complete(app: FastAPI) -> None:
    problem = app.openapi()["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert {"instance", "request_id", "errors"} <= set(problem["properties"])


def test_document_is_stable_across_renders(client: TestClient) -> None:
    # Post-processing runs once: a second render must not add another Idempotency-Key.
    first = client.get("/openapi.json").json()
    second = client.get("/openapi.json").json()
    assert first == second
    for path, item in first["paths"].items():
        for method, op in item.items():
            names = [(p["in"], p["name"].lower()) for p in op.get("parameters", [])]
            assert len(names) == len(set(names)), f"{method} {path} repeats a parameter"


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"kind": "web",}',
        b"not json",
        b'{"kind": "web"',
        b"\xff\xfe\x00{}",  # not UTF-8 at all
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the parser's recursion limit
    ],
    ids=["open-brace", "trailing-comma", "not-json", "unterminated", "bad-utf8", "too-deep"],
)
def test_malformed_json_is_400(client: TestClient, auth: dict[str, str], body: bytes) -> None:
    response = client.post(
        "/api/v1/channels", content=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "malformed_json"
    assert problem["status"] == 400
    assert "Traceback" not in response.text
    assert "JSONDecodeError" not in response.text


def test_malformed_json_on_every_json_body_operation(
    app: FastAPI, client: TestClient, fuzz_token: str
) -> None:
    everything = {"Authorization": f"Bearer {fuzz_token}", "Content-Type": "application/json"}
    checked = 0
    for path, method, op in _operations(app):
        if "application/json" not in op.get("requestBody", {}).get("content", {}):
            continue
        url = path.replace("{", "").replace("}", "")  # a dummy id: the body is read first
        response = client.request(method.upper(), url, content=b'{"oops": ', headers=everything)
        assert response.status_code == 400, f"{method.upper()} {path}: {response.text}"
        assert response.json()["code"] == "malformed_json"
        checked += 1
    assert checked >= 2


# -- inputs that once reached the database unchecked ----------------------------------------


def test_webhook_schema_states_what_the_server_enforces(app: FastAPI) -> None:
    schemas = app.openapi()["components"]["schemas"]
    create = schemas["WebhookEndpointCreate"]["properties"]
    assert "pattern" in create["event_types"]["items"]
    assert "pattern" in create["url"]


def test_events_cursor_beyond_bigint_is_refused(client: TestClient, fuzz_token: str) -> None:
    headers = {"Authorization": f"Bearer {fuzz_token}"}
    response = client.get(f"/api/v1/events?cursor={2**63}", headers=headers)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/api/v1/webhook-endpoints/we_%00", None),
        ("GET", "/api/v1/events?type=order%00", None),
        (
            "POST",
            "/api/v1/webhook-endpoints",
            {"url": "https://example.com/hook", "event_types": ["*"], "description": "a\x00b"},
        ),
    ],
    ids=["path-id", "query-filter", "body-text"],
)
def test_nul_characters_in_events_routes_are_refused(
    client: TestClient, fuzz_token: str, method: str, url: str, body: dict[str, Any] | None
) -> None:
    headers = {"Authorization": f"Bearer {fuzz_token}"}
    response = client.request(method, url, json=body, headers=headers)
    assert response.status_code == 422, response.text
