"""The SSE stock stream end to end: a real uvicorn, httpx streaming, commits from two processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.events.outbox import Pending, emit_many
from seamline.inventory import stock
from seamline.inventory.schemas import ReceiptCreate
from seamline.inventory.stream import (
    POLL_SECONDS,
    StockChange,
    StockFilter,
    StockStreamHub,
    _unseen,
)
from seamline.inventory.stream_api import Subscription
from tests.catalog_helpers import events
from tests.stock_helpers import make_location, make_variant

STREAM = "/api/v1/stock/stream"
LATENCY = 1.0  # the promise; typically milliseconds in-process and < 0.3 s across processes
WAIT = 5.0  # how long a test waits for anything before failing


@dataclass
class Block:
    """One SSE block as a browser sees it (a client-side parser, for the tests only)."""

    event: str
    id: str | None
    data: str
    comment: str | None

    def json(self) -> Any:
        return json.loads(self.data)


class Stream:
    def __init__(self, response: httpx.Response) -> None:
        self._blocks = self._parse(response)

    @staticmethod
    async def _parse(response: httpx.Response) -> AsyncIterator[Block]:
        fields: dict[str, str] = {}
        comment: str | None = None
        async for line in response.aiter_lines():
            if line.startswith(":"):
                comment = line[1:].strip()
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            elif fields or comment is not None:
                event, data = fields.get("event", "message"), fields.get("data", "")
                yield Block(event, fields.get("id"), data, comment)
                fields, comment = {}, None

    async def next_block(self) -> Block:
        with anyio.fail_after(WAIT):
            return await anext(self._blocks)

    async def next_event(self) -> Block:
        """The next event, past pings and comments."""
        while (block := await self.next_block()).comment is not None:
            pass
        return block

    async def ended(self) -> bool:
        try:
            await self.next_event()
        except StopAsyncIteration:
            return True
        return False


@asynccontextmanager
async def open_stream(
    base: str, token: str, headers: dict[str, str] | None = None, **params: Any
) -> AsyncIterator[Stream]:
    """Connect, and wait until the server says the subscription is in place."""
    headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(WAIT, read=None)) as client,
        client.stream("GET", STREAM, params=params, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        assert (await stream.next_block()).comment == "subscribed"
        yield stream


@dataclass
class Live:
    """The app on a real socket, a secret key, and shortcuts."""

    base: str
    token: str
    api: httpx.Client

    def stream(self, token: str = "", **params: Any) -> AbstractAsyncContextManager[Stream]:
        headers = params.pop("headers", None)
        return open_stream(self.base, token or self.token, headers, **params)

    def make(self, *handles: str) -> list[str]:
        """Handles starting with ``loc`` make locations, the others variants."""
        make = {True: make_location, False: make_variant}
        return [make[h.startswith("loc")](self.api, {}, h) for h in handles]  # type: ignore[operator]

    async def receive(self, location_id: str, variant_id: str, quantity: int) -> None:
        body = {"location_id": location_id, "variant_id": variant_id, "quantity": quantity}
        async with httpx.AsyncClient(base_url=self.base, headers=self.api.headers) as client:
            response = await client.post("/api/v1/stock/receipts", json=body, timeout=WAIT)
        assert response.status_code == 201, response.text


@pytest.fixture
def live(live_server: str, make_key: Callable[..., str]) -> Iterator[Live]:
    token = make_key()
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=live_server, headers=auth, timeout=WAIT) as api:
        yield Live(live_server, token, api)


def stock_seqs(db: Database) -> list[int]:
    return [e.seq for e in events(db, "inventory.changed")]


def where(block: Block) -> tuple[str, str]:
    return block.json()["location_id"], block.json()["variant_id"]


@pytest.mark.anyio
async def test_a_change_reaches_a_storefront_within_a_second(
    live: Live, make_key: Callable[..., str], db: Database
) -> None:
    loc, var = live.make("loc-main", "tee")
    publishable = make_key(kind="publishable", name="storefront")
    async with live.stream(publishable, variant_id=var) as stream:
        started = time.monotonic()
        await live.receive(loc, var, 5)
        block = await stream.next_event()
        elapsed = time.monotonic() - started
    assert elapsed < LATENCY, f"{elapsed:.3f} s"
    assert (block.event, block.id) == ("inventory.changed", str(stock_seqs(db)[-1]))
    data = block.json()
    assert data["seq"] == int(block.id or 0)
    assert (data["location_id"], data["variant_id"], data["cause"]) == (loc, var, "receipt")
    assert (data["on_hand"], data["reserved"], data["available"]) == (5, 0, 5)
    assert data["variant"] == {"on_hand": 5, "reserved": 0, "available": 5}


@pytest.mark.anyio
async def test_filters_by_variant_and_by_location(live: Live) -> None:
    loc1, loc2, a, b = live.make("loc-one", "loc-two", "tee", "cap")
    async with (
        live.stream(variant_id=a) as by_variant,
        live.stream(location_id=loc2) as by_location,
    ):
        await live.receive(loc1, b, 1)  # neither
        await live.receive(loc2, b, 2)  # the location stream only
        await live.receive(loc1, a, 3)  # the variant stream only
        await live.receive(loc2, a, 4)  # both
        seen_by_variant = [await by_variant.next_event() for _ in range(2)]
        seen_by_location = [await by_location.next_event() for _ in range(2)]
    assert [where(b) for b in seen_by_variant] == [(loc1, a), (loc2, a)]
    assert [where(b) for b in seen_by_location] == [(loc2, b), (loc2, a)]
    assert seen_by_variant[1].json()["variant"]["on_hand"] == 7  # over both locations


@pytest.mark.anyio
async def test_last_event_id_resumes_with_what_was_missed(live: Live, db: Database) -> None:
    loc1, loc2, a, b = live.make("loc-one", "loc-two", "tee", "cap")
    for loc, var, quantity in [(loc1, a, 1), (loc1, a, 2), (loc2, a, 4), (loc1, b, 8)]:
        await live.receive(loc, var, quantity)
    first, second, third, _ = stock_seqs(db)
    await anyio.sleep(2 * POLL_SECONDS)  # the hub has read them: they come by replay only
    resume = {"Last-Event-ID": str(first)}
    async with live.stream(headers=resume, variant_id=a) as stream:
        missed = [await stream.next_event() for _ in range(2)]
        await live.receive(loc2, a, 1)
        now = await stream.next_event()
    assert [m.id for m in missed] == [str(second), str(third)]
    assert [(m.json()["location_id"], m.json()["on_hand"]) for m in missed] == [
        (loc1, 3),
        (loc2, 4),
    ]
    assert (where(now), now.json()["on_hand"]) == ((loc2, a), 5)
    assert int(now.id or 0) > third

    unknown = {"Last-Event-ID": "999999"}  # pruned, or from another database
    async with live.stream(headers=unknown, variant_id=a) as stream:
        resync = await stream.next_event()
        await live.receive(loc1, a, 1)
        now = await stream.next_event()
    assert (resync.event, resync.id, resync.json()) == (
        "inventory.resync",
        None,
        {"reason": "history_unavailable"},
    )
    assert (where(now), now.json()["on_hand"]) == ((loc1, a), 4)


@pytest.mark.anyio
async def test_a_change_from_another_process_arrives_by_polling(
    live: Live, database_url: str
) -> None:
    loc, var = live.make("loc-main", "tee")
    other = Database(database_url)  # its own engine and commit hooks: only polling sees it
    try:
        async with live.stream(location_id=loc) as stream:
            started = time.monotonic()
            with other.transaction() as session:
                stock.receive(session, ReceiptCreate(location_id=loc, variant_id=var, quantity=7))
            block = await stream.next_event()
            elapsed = time.monotonic() - started
    finally:
        other.dispose()
    assert elapsed < LATENCY, f"{elapsed:.3f} s"
    assert (where(block), block.json()["on_hand"]) == ((loc, var), 7)


@pytest.mark.postgres_only  # SQLite has one writer: no transaction commits past another
@pytest.mark.anyio
@pytest.mark.parametrize("between", [0, 3000], ids=["next-seq", "under-3000-events"])
async def test_a_lower_seq_committed_late_is_still_delivered(
    live: Live, database_url: str, db: Database, between: int
) -> None:
    """A stock change that took its seq first and commits after a higher one still reaches the
    stream, also when thousands of outbox events (an ingestion drain's) went in between."""
    loc1, loc2, a, b = live.make("loc-one", "loc-two", "tee", "cap")
    other = Database(database_url)
    session = other.sessions()
    try:
        async with live.stream(variant_id=[a, b]) as stream:
            stock.receive(session, ReceiptCreate(location_id=loc1, variant_id=a, quantity=1))
            session.flush()  # holds the lower seq, not yet committed
            if between:
                with db.transaction() as bulk:
                    noise = [Pending("nobody.wants.this", "t", f"n{n}", {}) for n in range(between)]
                    emit_many(bulk, noise)
            await live.receive(loc2, b, 2)  # a higher seq, committed first
            early = await stream.next_event()
            await anyio.sleep(0.6)  # the hub polls past the gap a couple of times
            session.commit()
            late = await stream.next_event()
    finally:
        session.close()
        other.dispose()
    assert (where(early), where(late)) == ((loc2, b), (loc1, a))
    assert stock_seqs(db) == [int(late.id or 0), int(early.id or 0)]
    assert int(late.id or 0) < int(early.id or 0) - between


@pytest.mark.anyio
async def test_a_commit_in_this_process_wakes_the_hub_at_once(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    loc, var = make_location(client, auth, "loc-main"), make_variant(client, auth, "tee")
    hub = StockStreamHub(db, poll_seconds=60)  # polling alone would take a minute
    hub.start()
    try:
        sub = Subscription(StockFilter(frozenset({var})), asyncio.get_running_loop(), 10)
        hub.subscribe(sub)
        await anyio.sleep(0.3)  # the first round sets the cursor
        with db.transaction() as session:
            stock.receive(session, ReceiptCreate(location_id=loc, variant_id=var, quantity=3))
        taken = await sub.take(timeout=LATENCY)
    finally:
        await anyio.to_thread.run_sync(hub.stop)
    assert taken is not None
    assert [(c.variant_id, c.here) for c in taken[0]] == [(var, (3, 0))]
    assert db.wakeup.is_set(), "the worker's wake-up is left to the worker"


def test_the_stream_needs_a_key_and_a_valid_filter(
    app: FastAPI, client: TestClient, auth: dict[str, str]
) -> None:
    response = client.get(STREAM, params={"variant_id": "var_abc"})
    assert (response.status_code, response.json()["code"]) == (401, "missing_api_key")

    def refused(params: dict[str, Any], headers: dict[str, str] | None = None) -> list[str]:
        response = client.get(STREAM, params=params, headers={**auth, **(headers or {})})
        assert response.status_code == 422, response.text
        return [e["path"] for e in response.json()["errors"]]

    assert refused({}) == ["query.variant_id", "query.location_id"]
    assert refused({"variant_id": "NOT AN ID"}) == ["query.variant_id.0"]
    assert refused({"location_id": [f"loc_{i}" for i in range(101)]}) == ["query.location_id"]
    assert refused({"variant_id": "var_abc"}, {"Last-Event-ID": "x"}) == ["header.Last-Event-ID"]

    op = app.openapi()["paths"][STREAM]["get"]
    assert op["x-required-scope"] == "inventory:read"
    assert "text/event-stream" in op["responses"]["200"]["content"]


@pytest.mark.anyio
async def test_a_disconnect_and_a_hub_stop_end_the_subscription(live: Live, app: FastAPI) -> None:
    (var,) = live.make("tee")
    hub = app.state.stock_stream
    async with live.stream(variant_id=var):
        assert hub.subscribers == 1
    with anyio.fail_after(WAIT):
        while hub.subscribers:
            await anyio.sleep(0.05)

    async with live.stream(variant_id=var) as stream:
        started = time.monotonic()
        await anyio.to_thread.run_sync(hub.stop)  # what the lifespan does on shutdown
        assert await stream.ended()
        assert time.monotonic() - started < 2


@pytest.mark.anyio
async def test_a_slow_client_gets_the_latest_figure_per_key_in_bounded_memory() -> None:
    sub = Subscription(StockFilter(frozenset({"var_a"})), asyncio.get_running_loop(), limit=3)

    def change(seq: int, location_id: str) -> StockChange:
        at = datetime.now(UTC)
        return StockChange(seq, location_id, "var_a", (seq, 0), (seq, 0), "receipt", 1, at)

    async def take_now() -> tuple[list[StockChange], bool]:
        taken = await sub.take(timeout=0)
        assert taken is not None
        return taken

    sub.deliver([change(seq, f"loc_{seq % 2}") for seq in range(1, 1001)])
    changes, dropped = await take_now()
    assert not dropped
    assert [(c.location_id, c.here[0], c.events) for c in changes] == [
        ("loc_1", 999, 500),
        ("loc_0", 1000, 500),
    ]

    sub.deliver([change(seq, f"loc_{seq}") for seq in range(1, 11)])  # 10 keys, room for 3
    changes, dropped = await take_now()
    assert dropped
    assert [c.location_id for c in changes] == ["loc_10"]
    sub.close()
    assert await sub.take(timeout=0) is None


def test_server_shutdown_with_open_streams_does_not_hang(
    tmp_path: Path, database_url: str, api_key: str
) -> None:
    # A real ``seamline serve`` stopped by SIGTERM, as in production: uvicorn waits for open
    # responses before the lifespan ends, so streams must end on the signal itself.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {
        **os.environ,
        "SEAMLINE_DATABASE_URL": database_url,
        "SEAMLINE_SECRET_KEY": "test-secret-key-0123456789",
        "SEAMLINE_DATA_DIR": str(tmp_path / "data"),
        "SEAMLINE_ENVIRONMENT": "test",
    }
    command = [sys.executable, "-m", "seamline", "serve", "--no-worker", "--no-migrate"]
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"

    async def stream_then_stop() -> float:
        async with open_stream(base, api_key, variant_id="var_any") as stream:
            started = time.monotonic()
            server.send_signal(signal.SIGTERM)
            assert await stream.ended()
        await anyio.to_thread.run_sync(lambda: server.wait(timeout=WAIT))
        return time.monotonic() - started

    try:
        deadline = time.monotonic() + 20
        while not _answers(f"{base}/healthz"):
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "seamline serve did not start"
            time.sleep(0.1)
        assert anyio.run(stream_then_stop) < WAIT
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_skipped_seqs_are_kept_as_ranges_split_by_late_commits(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub remembers skipped seqs as ranges, however far below the newest they are, drops
    the ones that arrive late, and forgets a range once its look-back has passed."""
    now = [100.0]
    monkeypatch.setattr("seamline.inventory.stream.time.monotonic", lambda: now[0])
    hub = StockStreamHub(db, lookback_seconds=10)
    hub._cursor = 10
    hub._track([11, 5_000, 5_002])
    assert hub._cursor == 5_002
    assert sorted(hub._gaps) == [(12, 4_999), (5_001, 5_001)]
    now[0] = 105.0
    hub._track([12, 2_000, 5_001, 5_003])  # late commits, and one new seq
    assert sorted(hub._gaps) == [(13, 1_999), (2_001, 4_999)]
    assert hub._cursor == 5_003
    now[0] = 110.5  # their look-back is over
    hub._track([5_010])
    assert sorted(hub._gaps) == [(5_004, 5_009)]


def test_many_short_gaps_are_read_as_one_list_of_seqs(db: Database) -> None:
    """Hundreds of rolled-back seqs in the look-back (a flash sale's refusals and retries) make
    one statement part, not one each; rows in long ranges and above the cursor still come."""
    with db.transaction() as session:
        emit_many(
            session,
            [Pending("test.gap", "test", f"a{n}", {}) for n in range(700)],
        )
    with db.transaction(readonly=True) as session:
        seqs = sorted(session.scalars(select(OutboxEvent.seq)))
    base = seqs[0] - 1
    singles = [(base + n, base + n) for n in range(1, 400, 2)]  # 200 one-seq gaps
    short = [(base + 401, base + 405)]  # five seqs: still "short"
    long = [(base + 450, base + 499)]  # fifty: a range of its own
    statement = _unseen(base + 650, [*singles, *short, *long])
    sql = str(statement.compile(db.engine))
    assert sql.count("UNION ALL") == 2  # above the cursor, the seq list, the long range
    with db.transaction(readonly=True) as session:
        got = [row.seq for row in session.execute(statement)]
    wanted = (
        [base + n for n in range(1, 400, 2)]
        + list(range(base + 401, base + 406))
        + list(range(base + 450, base + 500))
        + list(range(base + 651, base + 701))
    )
    assert got == wanted
