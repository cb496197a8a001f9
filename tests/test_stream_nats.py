"""The NATS JetStream relay against a real server (``SEAMLINE_TEST_NATS_URL``).

Events go to the real ``SEAMLINE`` stream (subjects ``seamline.>`` can belong to one stream
only), each test on its own event type so it reads back only its own subject; the messages a
test published are deleted afterwards, and nothing else on the server is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import nats
import pytest
from nats.js.errors import NotFoundError
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.events import retry
from seamline.events.models import Delivery, OutboxEvent
from seamline.events.outbox import STREAM_CONSUMER, emit
from seamline.events.registry import Leased
from seamline.events.stream import DUPLICATE, STREAM_NAME, NatsStream, subject_for
from seamline.events.worker import Worker
from seamline.kit.clock import FrozenClock
from seamline.runtime import Runtime, build_runtime
from seamline.settings import Settings

pytestmark = pytest.mark.nats


@dataclass
class StoredMsg:
    seq: int
    subject: str
    msg_id: str | None
    body: dict[str, Any]


async def _read(url: str, subject: str) -> list[StoredMsg]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        out: list[StoredMsg] = []
        seq = 1
        while True:
            try:
                msg = await js.get_msg(STREAM_NAME, seq=seq, subject=subject, next=True)
            except NotFoundError:
                return out
            headers = msg.headers or {}
            out.append(
                StoredMsg(msg.seq, msg.subject, headers.get("Nats-Msg-Id"), json.loads(msg.data))
            )
            seq = msg.seq + 1
    finally:
        await nc.close()


async def _delete(url: str, seqs: list[int]) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for seq in seqs:
            await js.delete_msg(STREAM_NAME, seq)
    finally:
        await nc.close()


@pytest.fixture
def nats_url() -> str:
    return os.environ["SEAMLINE_TEST_NATS_URL"]


@pytest.fixture
def event_type(nats_url: str) -> Iterator[str]:
    """A type (so a subject) no other test uses; its messages are deleted afterwards."""
    kind = f"test.nats.t{uuid.uuid4().hex}"
    yield kind
    stored = asyncio.run(_read(nats_url, subject_for(kind)))
    if stored:
        asyncio.run(_delete(nats_url, [m.seq for m in stored]))


def read(url: str, event_type: str) -> list[StoredMsg]:
    return asyncio.run(_read(url, subject_for(event_type)))


@pytest.fixture
def streaming(settings: Settings, nats_url: str) -> Iterator[Runtime]:
    """A runtime configured like production with NATS: streaming database, relay, worker."""
    rt = build_runtime(settings.model_copy(update={"nats_url": nats_url}))
    assert rt.stream is not None
    assert rt.db.dialect in ("sqlite", "postgresql")
    yield rt
    rt.close()


def put(db: Database, event_type: str, n: int, aggregate: str = "o1") -> str:
    with db.transaction() as session:
        return emit(
            session, event_type, aggregate_type="order", aggregate_id=aggregate, payload={"n": n}
        )


def stream_delivery(db: Database, event_id: str) -> Delivery:
    with db.transaction(readonly=True) as session:
        return session.execute(
            select(Delivery)
            .join(OutboxEvent, OutboxEvent.seq == Delivery.event_seq)
            .where(OutboxEvent.id == event_id, Delivery.consumer == STREAM_CONSUMER)
        ).scalar_one()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_events_reach_the_stream_with_their_id_as_message_id(
    streaming: Runtime, event_type: str, nats_url: str, clock: FrozenClock
) -> None:
    ids = [put(streaming.db, event_type, n) for n in range(3)]
    streaming.worker().drain()

    for event_id in ids:
        row = stream_delivery(streaming.db, event_id)
        assert (row.status, row.attempts, row.last_error) == ("done", 1, None)
    stored = read(nats_url, event_type)
    assert [m.msg_id for m in stored] == ids, "one message per event, in the aggregate's order"
    assert {m.subject for m in stored} == {f"seamline.{event_type}"}
    first = stored[0].body
    assert first["id"] == ids[0]
    assert first["type"] == event_type
    assert first["aggregate"] == {"type": "order", "id": "o1"}
    assert first["data"] == {"n": 0}


def test_republishing_after_a_crash_is_deduplicated_by_the_stream(
    streaming: Runtime,
    event_type: str,
    nats_url: str,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event_id = put(streaming.db, event_type, 1)
    worker = streaming.worker()
    assert worker.stream is not None
    sent: list[Leased] = []
    real_send = worker.stream.send

    def spy(items: list[Leased]) -> None:
        real_send(items)
        sent.extend(items)

    monkeypatch.setattr(worker.stream, "send", spy)

    # The worker dies after publishing, before recording the outcome.
    def crash(items: list[Leased]) -> None:
        raise SystemExit("killed after publish")

    real_record = worker._record
    monkeypatch.setattr(worker, "_record", crash)
    with pytest.raises(SystemExit):
        worker.run_once()
    monkeypatch.setattr(worker, "_record", real_record)
    row = stream_delivery(streaming.db, event_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.locked_until is not None
    assert [m.msg_id for m in read(nats_url, event_type)] == [event_id]
    assert sent[0].outcome.ok
    assert sent[0].outcome.excerpt is None

    # While the lease holds, nobody publishes it again; once it lapses, it is published again.
    worker.drain()
    assert len(sent) == 1
    clock.current = row.locked_until + timedelta(microseconds=1)
    worker.drain()
    assert len(sent) == 2
    assert sent[1].outcome.ok
    assert sent[1].outcome.excerpt == DUPLICATE, "JetStream should recognise the message id"
    row = stream_delivery(streaming.db, event_id)
    assert (row.status, row.attempts) == ("done", 2)
    assert [m.msg_id for m in read(nats_url, event_type)] == [event_id], "stored once"


def test_unreachable_stream_keeps_deliveries_pending_until_it_is_back(
    streaming: Runtime, event_type: str, nats_url: str, clock: FrozenClock
) -> None:
    t0 = clock.current
    dead = NatsStream(f"nats://127.0.0.1:{free_port()}", timeout=0.5)
    try:
        offline = Worker(streaming.db, stream=dead)
        event_id = put(streaming.db, event_type, 1)

        started = time.monotonic()
        offline.run_once()
        assert time.monotonic() - started < 3, "an unreachable server must fail fast"
        row = stream_delivery(streaming.db, event_id)
        assert (row.status, row.attempts, row.locked_until) == ("pending", 1, None)
        assert row.last_error is not None
        assert "stream unavailable" in row.last_error
        assert retry.stream_delay(1) == timedelta(seconds=2)
        assert row.next_attempt_at == t0 + timedelta(seconds=2)

        clock.advance(seconds=1)
        offline.drain()
        assert stream_delivery(streaming.db, event_id).attempts == 1, "retried before its delay"
        clock.advance(seconds=1)
        offline.drain()
        row = stream_delivery(streaming.db, event_id)
        assert (row.status, row.attempts) == ("pending", 2)
        assert row.next_attempt_at == clock.current + timedelta(seconds=4)
        assert read(nats_url, event_type) == []
    finally:
        dead.close()

    clock.advance(seconds=4)
    streaming.worker().drain()
    row = stream_delivery(streaming.db, event_id)
    assert (row.status, row.attempts, row.last_error) == ("done", 3, None)
    assert [m.msg_id for m in read(nats_url, event_type)] == [event_id]


def test_stream_retries_never_give_up() -> None:
    assert retry.stream_delay(1) == timedelta(seconds=2)
    assert retry.stream_delay(50) == timedelta(minutes=5)
    assert retry.stream_delay(10_000) == timedelta(minutes=5)


class TcpProxy:
    """A local port forwarding to the NATS server, which a test can switch off and on."""

    def __init__(self, port: int, upstream: tuple[str, int]) -> None:
        self.port = port
        self.upstream = upstream
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self._stop.clear()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(0.05)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """The server vanishes: no new connections, open ones cut."""
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()


def test_one_relay_survives_an_outage_before_and_after_connecting(
    streaming: Runtime, event_type: str, nats_url: str, clock: FrozenClock
) -> None:
    target = urlparse(nats_url)
    proxy = TcpProxy(free_port(), (target.hostname or "127.0.0.1", target.port or 4222))
    relay = NatsStream(f"nats://127.0.0.1:{proxy.port}", timeout=1.0)
    worker = Worker(streaming.db, stream=relay)
    try:
        # Down from the start: the first connect fails within its timeout, and leaves nothing
        # behind that would connect later on its own.
        first = put(streaming.db, event_type, 1, aggregate="o1")
        started = time.monotonic()
        worker.run_once()
        assert time.monotonic() - started < 4
        assert stream_delivery(streaming.db, first).status == "pending"

        proxy.start()
        clock.advance(seconds=2)
        worker.drain()
        assert stream_delivery(streaming.db, first).status == "done"

        # Gone while connected: the batch fails within about one timeout, nothing is lost.
        proxy.stop()
        second = put(streaming.db, event_type, 2, aggregate="o2")
        started = time.monotonic()
        worker.run_once()
        assert time.monotonic() - started < 4
        row = stream_delivery(streaming.db, second)
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.last_error

        proxy.start()  # back: the client reconnects by itself
        deadline = time.monotonic() + 15
        while not relay.ping():
            assert time.monotonic() < deadline, "the relay did not reconnect"
            time.sleep(0.1)
        clock.advance(minutes=5)
        worker.drain()
        row = stream_delivery(streaming.db, second)
        assert (row.status, row.last_error) == ("done", None)
        stored = read(nats_url, event_type)
        assert sorted(m.msg_id or "" for m in stored) == sorted([first, second])
    finally:
        relay.close()
        proxy.stop()
