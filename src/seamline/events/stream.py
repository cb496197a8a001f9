"""The NATS JetStream relay: every event to ``seamline.<type>``, deduplicated by event id.

nats-py is asyncio-only while the worker is a plain thread, so the relay owns a private event
loop on a daemon thread and the worker submits coroutines to it.

Every call is bounded: an unreachable or vanished server fails the batch within about
``timeout`` seconds (the deliveries stay pending and are retried), and nothing keeps running
on the relay's loop after the call has returned.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog
from nats.aio.client import Client
from nats.errors import ConnectionClosedError, NoServersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from seamline.events.registry import Leased, Outcome

log = structlog.get_logger("seamline.stream")

STREAM_NAME = "SEAMLINE"
SUBJECT_PREFIX = "seamline"
DUPLICATE = "duplicate"  # Outcome.excerpt of a publish JetStream recognised by its message id
T = TypeVar("T")

# Errors that mean "the server is not answering": the rest of the batch would fail the same way
# after waiting out the same timeout, so it is failed at once instead.
_UNREACHABLE = (
    asyncio.TimeoutError,
    NatsTimeoutError,
    ConnectionClosedError,
    NoServersError,
    OSError,
)


def subject_for(event_type: str) -> str:
    return f"{SUBJECT_PREFIX}.{event_type}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class NatsStream:
    def __init__(self, url: str, *, stream: str = STREAM_NAME, timeout: float = 5.0) -> None:
        self.url = url
        self.stream = stream
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats", daemon=True)
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout if timeout is not None else self.timeout * 3)
        except BaseException:
            # A timed-out call must not go on in the background (a connect loop that never
            # ends, publishes landing after their outcome was recorded).
            future.cancel()
            raise

    async def _on_error(self, exc: Exception) -> None:
        log.debug("stream_error", error=repr(exc))

    async def _on_disconnected(self) -> None:
        log.warning("stream_disconnected", url=self.url)

    async def _on_reconnected(self) -> None:
        log.info("stream_reconnected", url=self.url)

    async def _connect(self) -> Any:
        if self._nc is None or self._nc.is_closed:
            nc = Client()
            try:
                # nats-py retries the first connect forever when reconnects are unlimited; the
                # worker needs an answer, so the first connect is bounded here. Once connected,
                # the client reconnects on its own after an outage.
                await asyncio.wait_for(
                    nc.connect(
                        self.url,
                        connect_timeout=math.ceil(self.timeout),
                        max_reconnect_attempts=-1,
                        allow_reconnect=True,
                        error_cb=self._on_error,
                        disconnected_cb=self._on_disconnected,
                        reconnected_cb=self._on_reconnected,
                    ),
                    self.timeout,
                )
                js = nc.jetstream(timeout=self.timeout)
                try:
                    await js.stream_info(self.stream)
                except NotFoundError:
                    await js.add_stream(
                        StreamConfig(name=self.stream, subjects=[f"{SUBJECT_PREFIX}.>"])
                    )
            except TimeoutError as exc:
                await self._abandon(nc)
                raise ConnectionError(f"cannot reach {self.url}: {nc.last_error!r}") from exc
            except BaseException:
                await self._abandon(nc)
                raise
            self._nc, self._js = nc, js
        return self._js

    @staticmethod
    async def _abandon(nc: Any) -> None:
        try:
            await asyncio.wait_for(nc.close(), 1.0)
        except BaseException:  # closing a half-open client is best effort
            log.debug("stream_abandon_failed")

    async def _publish_all(self, items: list[Leased]) -> None:
        js = await self._connect()
        failed: set[tuple[str, str]] = set()
        for index, item in enumerate(items):
            aggregate = (item.event.aggregate_type, item.event.aggregate_id)
            if aggregate in failed:
                # Keep the stream in order per aggregate: later events wait for the failed one.
                item.outcome = Outcome(False, "an earlier event of this aggregate failed")
                continue
            if not self._nc.is_connected:
                # Reconnecting after an outage: publishing now would only wait for a timeout.
                for rest in items[index:]:
                    rest.outcome = Outcome(False, "stream disconnected (reconnecting)")
                return
            body = json.dumps(item.event.envelope(), separators=(",", ":")).encode()
            try:
                ack = await js.publish(
                    subject_for(item.event.type),
                    body,
                    headers={"Nats-Msg-Id": item.event.id},
                    stream=self.stream,
                )
            except _UNREACHABLE as exc:
                for rest in items[index:]:
                    rest.outcome = Outcome(False, _describe(exc))
                return
            except Exception as exc:  # one failed publish must not hide the others' results
                item.outcome = Outcome(False, _describe(exc))
                failed.add(aggregate)
                continue
            item.outcome = Outcome(True, excerpt=DUPLICATE if ack.duplicate else None)
            if ack.duplicate:
                log.info("stream_duplicate", event_id=item.event.id, seq=ack.seq)

    def send(self, items: list[Leased]) -> None:
        """Publish ``items`` (setting each one's outcome); never raises, never hangs."""
        # At worst: connect, the stream check, one unanswered publish (which fails the rest at
        # once); the per-item share leaves room for a large batch of slow acks.
        budget = self.timeout * (3 + len(items))
        try:
            self._run(self._publish_all(items), budget)
        except Exception as exc:
            log.warning("stream_unavailable", error=repr(exc))
            for item in items:
                if not item.outcome.ok:
                    item.outcome = Outcome(False, f"stream unavailable: {exc!r}"[:500])

    def ping(self) -> bool:
        """Whether the server answers (used by ``/readyz``)."""
        try:
            self._run(self._ping())
        except Exception:
            return False
        return True

    async def _ping(self) -> None:
        await self._connect()
        # While reconnecting, nats-py's flush returns at once without a round trip.
        if not self._nc.is_connected:
            raise ConnectionError("stream disconnected (reconnecting)")
        await self._nc.flush(timeout=self.timeout)

    def close(self) -> None:
        async def _close() -> None:
            if self._nc is not None and not self._nc.is_closed:
                try:
                    await asyncio.wait_for(self._nc.drain(), self.timeout)
                except BaseException:
                    await self._abandon(self._nc)

        try:
            self._run(_close())
        except Exception:  # closing is best effort
            log.debug("stream_close_failed")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
