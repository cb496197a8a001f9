"""The webhook endpoint API and CLI."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from seamline.cli.main import app as cli_app
from seamline.db.engine import Database
from seamline.events import service
from seamline.events.handlers import fan_out_many, fan_out_to_webhooks
from seamline.events.models import OutboxEvent, WebhookAttempt
from seamline.events.outbox import emit
from seamline.events.registry import Event
from seamline.events.retry import WEBHOOK_SCHEDULE
from seamline.events.signing import verify
from seamline.events.worker import Worker, to_event
from seamline.kit.clock import FrozenClock
from seamline.settings import Settings, get_settings
from tests.webhooks.support import (
    API,
    Receiver,
    attempts_of,
    create_channel,
    create_endpoint,
    deliveries_of,
    exhaust_schedule,
    parse_time,
)


# -- 6. the endpoint API -----------------------------------------------------------------------
def test_patch_changes_event_types_and_reenables(
    client: TestClient, auth: dict[str, str], worker: Worker, receiver: Receiver
) -> None:
    endpoint = create_endpoint(client, auth, receiver.url(), ["order.*"])
    path = f"{API}/webhook-endpoints/{endpoint['id']}"
    create_channel(client, auth, "one")
    worker.drain()
    assert receiver.requests == []

    changed = client.patch(path, json={"event_types": ["channel.created", "order.*"]}, headers=auth)
    assert changed.status_code == 200, changed.text
    assert changed.json()["event_types"] == ["channel.created", "order.*"]
    create_channel(client, auth, "two")
    worker.drain()
    assert [r.json["data"]["handle"] for r in receiver.requests] == ["two"]

    off = client.patch(path, json={"status": "disabled"}, headers=auth)
    assert off.json()["status"] == "disabled"
    assert off.json()["disabled_reason"]
    create_channel(client, auth, "three")
    worker.drain()
    assert len(receiver.requests) == 1

    on = client.patch(path, json={"status": "enabled"}, headers=auth)
    assert on.status_code == 200
    assert on.json()["status"] == "enabled"
    assert on.json()["disabled_reason"] is None
    assert on.json()["disabled_at"] is None
    create_channel(client, auth, "four")
    worker.drain()
    assert [r.json["data"]["handle"] for r in receiver.requests] == ["two", "four"]

    moved = client.patch(
        path, json={"url": receiver.url("/v2"), "description": "new home"}, headers=auth
    )
    assert moved.json()["url"] == receiver.url("/v2")
    assert moved.json()["description"] == "new home"
    create_channel(client, auth, "five")
    worker.drain()
    assert receiver.requests[-1].path == "/v2"


def test_delete_removes_the_endpoint_and_what_was_queued_for_it(
    client: TestClient, auth: dict[str, str], db: Database, worker: Worker, receiver: Receiver
) -> None:
    receiver.answer = lambda _r: 500
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    create_channel(client, auth, "web")
    worker.drain()
    assert deliveries_of(db, endpoint["id"]) == [("pending", 1)]

    deleted = client.delete(f"{API}/webhook-endpoints/{endpoint['id']}", headers=auth)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert deliveries_of(db, endpoint["id"]) == []
    with db.transaction(readonly=True) as session:
        logged = session.scalar(
            select(func.count())
            .select_from(WebhookAttempt)
            .where(WebhookAttempt.endpoint_id == endpoint["id"])
        )
    assert logged == 0
    assert client.get(f"{API}/webhook-endpoints/{endpoint['id']}", headers=auth).status_code == 404
    worker.drain()
    assert len(receiver.requests) == 1


def test_operator_disable_turns_queued_deliveries_dead_and_delete_drops_them(
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    worker: Worker,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    receiver.answer = lambda _r: 500
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    path = f"{API}/webhook-endpoints/{endpoint['id']}"
    create_channel(client, auth, "web")
    worker.drain()
    assert client.patch(path, json={"status": "disabled"}, headers=auth).status_code == 200
    clock.advance(minutes=1)
    worker.drain()
    assert len(receiver.requests) == 1  # nothing sent to a disabled endpoint
    assert deliveries_of(db, endpoint["id"]) == [("dead", 2)]
    assert attempts_of(client, auth, endpoint["id"])[0]["error"] == "endpoint is disabled"

    assert client.delete(path, headers=auth).status_code == 204
    assert deliveries_of(db, endpoint["id"]) == []
    with db.transaction(readonly=True) as session:
        assert service.list_dead(session) == []


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/rotate-secret"),
        ("GET", "/attempts"),
    ],
)
def test_unknown_endpoint_is_a_404_problem(
    client: TestClient, auth: dict[str, str], method: str, suffix: str
) -> None:
    kwargs: dict[str, Any] = {"json": {"description": "x"}} if method == "PATCH" else {}
    response = client.request(
        method, f"{API}/webhook-endpoints/we_missing{suffix}", headers=auth, **kwargs
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "webhook_endpoint_not_found"
    assert problem["status"] == 404
    assert "we_missing" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "not a url", "event_types": ["channel.*"]}, "url"),
        ({"url": "ftp://example.com/hook", "event_types": ["channel.*"]}, "url"),
        ({"url": "http://[zz::1]/hook", "event_types": ["channel.*"]}, "url"),
        ({"url": "http://[1.2.3.4]/hook", "event_types": ["channel.*"]}, "url"),
        ({"url": "http://[::1/hook", "event_types": ["channel.*"]}, "url"),
        ({"url": "https://example.com/" + "a" * 2100, "event_types": ["*"]}, "url"),
        ({"url": "https://example.com/hook", "event_types": []}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["Channel.Created"]}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["channel.*.x"]}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["channel..created"]}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["order*"]}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["a." * 60 + "b"]}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["*"], "secret": "x"}, "secret"),
        ({"event_types": ["*"]}, "url"),
    ],
)
def test_invalid_endpoint_is_a_422(
    client: TestClient, auth: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = client.post(f"{API}/webhook-endpoints", json=body, headers=auth)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert any(e["path"].startswith(f"body.{field}") for e in problem["errors"]), problem


def test_an_ipv6_endpoint_is_accepted(client: TestClient, auth: dict[str, str]) -> None:
    url = "https://[2001:db8::1]:8443/hook"
    response = client.post(
        f"{API}/webhook-endpoints", json={"url": url, "event_types": ["*"]}, headers=auth
    )
    assert response.status_code == 201, response.text
    assert response.json()["url"] == url


@pytest.mark.parametrize(
    "body",
    [
        {"url": "nope"},
        {"url": "https://example.com/" + "a" * 2100},  # was a 500 on PostgreSQL
        {"event_types": ["NOPE"]},
        {"event_types": []},
        {"status": "paused"},
    ],
)
def test_invalid_patch_is_a_422(
    client: TestClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    endpoint = create_endpoint(client, auth, "https://example.com/hook", ["*"])
    response = client.patch(f"{API}/webhook-endpoints/{endpoint['id']}", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    unchanged = client.get(f"{API}/webhook-endpoints/{endpoint['id']}", headers=auth).json()
    assert unchanged["url"] == "https://example.com/hook"
    assert unchanged["event_types"] == ["*"]


def test_scopes_guard_every_route(
    client: TestClient, auth: dict[str, str], make_key: Callable[..., str]
) -> None:
    endpoint = create_endpoint(client, auth, "https://example.com/hook", ["*"])
    path = f"{API}/webhook-endpoints/{endpoint['id']}"
    reader = {"Authorization": f"Bearer {make_key(scopes=['webhooks:read'])}"}
    assert client.get(f"{API}/webhook-endpoints", headers=reader).status_code == 200
    assert client.get(path, headers=reader).status_code == 200
    assert client.get(f"{path}/attempts", headers=reader).status_code == 200

    refused = [
        client.post(
            f"{API}/webhook-endpoints",
            json={"url": "https://example.com/x", "event_types": ["*"]},
            headers=reader,
        ),
        client.patch(path, json={"status": "disabled"}, headers=reader),
        client.post(f"{path}/rotate-secret", headers=reader),
        client.delete(path, headers=reader),
    ]
    for response in refused:
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "insufficient_scope"
    assert len(client.get(f"{API}/webhook-endpoints", headers=auth).json()["data"]) == 1
    assert client.get(path, headers=auth).json()["status"] == "enabled"

    other = {"Authorization": f"Bearer {make_key(scopes=['channels:read'])}"}
    assert client.get(f"{API}/webhook-endpoints", headers=other).status_code == 403
    assert client.get(f"{API}/webhook-endpoints").status_code == 401


def test_fan_out_is_idempotent(
    client: TestClient, auth: dict[str, str], db: Database, receiver: Receiver
) -> None:
    """Running the fan-out again for an event (a replay) does not fail or queue twice."""
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    create_channel(client, auth, "web")
    for _ in range(2):
        with db.transaction() as session:
            row = session.scalars(select(OutboxEvent)).one()
            fan_out_to_webhooks(session, to_event(row))
    assert deliveries_of(db, endpoint["id"]) == [("pending", 0)]


def test_fan_out_of_a_batch_queues_what_each_endpoint_subscribed_to(
    client: TestClient, auth: dict[str, str], db: Database, receiver: Receiver
) -> None:
    """The batch form: several events, two endpoints with different subscriptions; a replay
    of the batch queues nothing twice."""
    channels = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    everything = create_endpoint(client, auth, receiver.url(), ["*"])
    for handle in ("web", "app"):
        create_channel(client, auth, handle)
    with db.transaction() as session:
        emit(session, "order.placed", aggregate_type="order", aggregate_id="ord_1", payload={})
    with db.transaction(readonly=True) as session:
        emitted = [
            to_event(r) for r in session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))
        ]
    assert [e.type for e in emitted] == ["channel.created", "channel.created", "order.placed"]
    for _ in range(2):
        with db.transaction() as session:
            fan_out_many(session, emitted)
    assert deliveries_of(db, channels["id"]) == [("pending", 0)] * 2
    assert deliveries_of(db, everything["id"]) == [("pending", 0)] * 3


def test_fan_out_reads_one_table_when_nobody_subscribed(db: Database) -> None:
    sent: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event = Event("evt_x", 1, "channel.created", "channel", "ch_1", {}, datetime.now(UTC))
    sa_event.listen(db.engine, "before_cursor_execute", listener)
    try:
        with db.transaction() as session:
            fan_out_many(session, [event] * 3)
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", listener)
    assert [s for s in sent if "webhook_endpoints" in s], "the endpoints are read"
    assert len([s for s in sent if "webhook_endpoints" in s or "event_deliveries" in s]) == 1


# -- 7. the CLI --------------------------------------------------------------------------------
class Cli:
    """Runs ``seamline …`` in-process against the test's database."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def invoke(self, cli_app: typer.Typer, args: list[str]) -> Result:
        return self.runner.invoke(cli_app, args)


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    assert settings.database_url
    assert settings.secret_key
    monkeypatch.setenv("SEAMLINE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SEAMLINE_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("SEAMLINE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "300")  # Rich tables: no truncated ids
    get_settings.cache_clear()
    yield Cli()
    get_settings.cache_clear()


def test_cli_create_list_rotate_attempts(
    cli: Cli, db: Database, worker: Worker, receiver: Receiver, clock: FrozenClock
) -> None:
    created = cli.invoke(cli_app, ["webhooks", "create", receiver.url(), "-e", "channel.*"])
    assert created.exit_code == 0, created.output
    match = re.search(r"created (we_\w+)", created.output)
    assert match
    endpoint_id = match.group(1)
    secret = created.output.strip().splitlines()[-1]
    assert secret.startswith("whsec_")

    listed = cli.invoke(cli_app, ["webhooks", "list"])
    assert listed.exit_code == 0, listed.output
    assert endpoint_id in listed.output
    assert "channel.*" in listed.output
    assert "enabled" in listed.output
    assert secret not in listed.output

    rotated = cli.invoke(cli_app, ["webhooks", "rotate", endpoint_id])
    assert rotated.exit_code == 0, rotated.output
    new_secret = rotated.output.strip().splitlines()[-1]
    assert new_secret.startswith("whsec_")
    assert new_secret != secret

    made = cli.invoke(cli_app, ["channels", "create", "web", "web-eu"])
    assert made.exit_code == 0, made.output
    worker.drain()
    assert len(receiver.requests) == 1
    hit = receiver.requests[0]
    for key in (secret, new_secret):  # rotation grace: both verify
        verify(hit.body, hit.headers["seamline-signature"], key, now=clock().timestamp())

    attempts = cli.invoke(cli_app, ["webhooks", "attempts", endpoint_id])
    assert attempts.exit_code == 0, attempts.output
    assert hit.event_id in attempts.output
    assert "channel.created" in attempts.output
    assert "200" in attempts.output


def test_cli_refuses_bad_input_without_a_traceback(cli: Cli) -> None:
    bad_url = cli.invoke(cli_app, ["webhooks", "create", "not-a-url", "-e", "channel.*"])
    assert bad_url.exit_code == 2
    assert "Traceback" not in bad_url.output
    assert "url" in bad_url.output
    bad_type = cli.invoke(cli_app, ["webhooks", "create", "https://example.com", "-e", "Nope"])
    assert bad_type.exit_code == 2
    assert "event_types" in bad_type.output
    missing = cli.invoke(cli_app, ["webhooks", "rotate", "we_missing"])
    assert missing.exit_code == 1
    assert "webhook_endpoint_not_found" in missing.output
    listed = cli.invoke(cli_app, ["webhooks", "list"])
    assert "https://example.com" not in listed.output


def test_cli_reenable_and_replay_dead_letters(
    cli: Cli,
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    worker: Worker,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    receiver.answer = lambda _r: 500
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    create_channel(client, auth, "web")
    exhaust_schedule(worker, clock)
    assert deliveries_of(db, endpoint["id"]) == [("dead", len(WEBHOOK_SCHEDULE) + 1)]
    sent = len(receiver.requests)

    dead = cli.invoke(cli_app, ["worker", "--dead"])
    assert dead.exit_code == 0, dead.output
    assert f"webhook:{endpoint['id']}" in dead.output
    with db.transaction(readonly=True) as session:
        (letter,) = service.list_dead(session)

    receiver.answer = lambda _r: 200
    enabled = cli.invoke(cli_app, ["webhooks", "enable", endpoint["id"]])
    assert enabled.exit_code == 0, enabled.output
    assert (
        client.get(f"{API}/webhook-endpoints/{endpoint['id']}", headers=auth).json()["status"]
        == "enabled"
    )

    # Ids of deliveries and timers overlap, so an id alone is refused rather than guessed.
    ambiguous = cli.invoke(cli_app, ["worker", "--replay", str(letter.id)])
    assert ambiguous.exit_code == 1
    assert "dead_letter_kind_required" in ambiguous.output
    replayed = cli.invoke(cli_app, ["worker", "--replay", str(letter.id), "--kind", "delivery"])
    assert replayed.exit_code == 0, replayed.output
    assert "re-queued 1" in replayed.output
    worker.drain()
    assert len(receiver.requests) == sent + 1
    assert receiver.requests[-1].event_id == receiver.requests[0].event_id
    assert deliveries_of(db, endpoint["id"]) == [("done", 1)]
    assert cli.invoke(cli_app, ["worker", "--dead"]).output.strip() == "no dead letters"


def test_envelope_timestamps_are_utc(
    client: TestClient, auth: dict[str, str], worker: Worker, receiver: Receiver
) -> None:
    create_endpoint(client, auth, receiver.url(), ["*"])
    create_channel(client, auth, "web")
    worker.drain()
    created_at = parse_time(receiver.requests[0].json["created_at"])
    assert created_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created_at) < timedelta(minutes=5)
