"""The stock change stream: Server-Sent Events of ``inventory.changed`` (docs/realtime.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import structlog
from fastapi import APIRouter, Header, Query, Request
from pydantic import StringConstraints
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from seamline.api.deps import scoped
from seamline.inventory.schemas import ID_PATTERN
from seamline.inventory.stream import EVENT_TYPE, Key, StockChange, StockFilter, StockStreamHub
from seamline.kit.errors import FieldError, SeamlineError, Unprocessable

log = structlog.get_logger("seamline.stock_stream")

MAX_FILTER_IDS = 100
MAILBOX_KEYS = 256  # pending (location, variant) keys per client before a resync
PING_SECONDS = 15  # a comment line, so proxies keep an idle stream open
RETRY_MS = 2000  # how long a browser's EventSource waits before reconnecting
SEND_TIMEOUT_SECONDS = 30  # a client that reads nothing for this long is dropped
STREAM_SECONDS = 15 * 60  # then the stream ends; clients reconnect with Last-Event-ID
SHUTDOWN_GRACE_SECONDS = 2.0
RESYNC_EVENT = "inventory.resync"

router = APIRouter(tags=["inventory"])

StockIds = Annotated[
    list[Annotated[str, StringConstraints(max_length=40, pattern=ID_PATTERN)]] | None,
    Query(max_length=MAX_FILTER_IDS),
]
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        pattern=r"^[0-9]{1,18}$",
        description="Resume after this event id (browsers send it when they reconnect).",
    ),
]
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            f"`text/event-stream`: `{EVENT_TYPE}` events (id = outbox seq, data = JSON with "
            f"the current figures) and `{RESYNC_EVENT}` when changes were dropped."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    503: {
        "description": "The stream is not running in this process",
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    },
}


class StreamUnavailable(SeamlineError):
    status, title, code = 503, "Service unavailable", "stream_unavailable"


class StockEventResponse(EventSourceResponse):
    """An event stream whose stalled client is dropped quietly, not logged as a server error."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.info("stock_stream_client_stalled", seconds=SEND_TIMEOUT_SECONDS)


@router.get(
    "/stock/stream",
    response_class=StockEventResponse,
    responses=STREAM_RESPONSES,
    **scoped("inventory:read"),
)
async def stock_stream(
    request: Request,
    variant_id: StockIds = None,
    location_id: StockIds = None,
    last_event_id: LastEventId = None,
) -> StockEventResponse:
    """Live stock changes of these variants and/or locations, as Server-Sent Events.

    Repeat `variant_id` and `location_id` (up to 100 each); a change is sent when it matches
    any given variant AND any given location. Each message carries the figures current when
    it is sent, within a second of the commit.
    """
    if not variant_id and not location_id:
        message = "give at least one variant_id or location_id"
        raise Unprocessable(
            f"the stream needs a filter: {message}",
            errors=[
                FieldError("query.variant_id", message, "missing"),
                FieldError("query.location_id", message, "missing"),
            ],
        )
    hub: StockStreamHub | None = getattr(request.app.state, "stock_stream", None)
    if hub is None or not hub.running:
        raise StreamUnavailable("the stock stream is not running in this process")
    wanted = StockFilter(frozenset(variant_id or ()), frozenset(location_id or ()))
    feed = Feed(hub, wanted, int(last_event_id) if last_event_id is not None else None)
    return StockEventResponse(
        feed.events(),
        ping=PING_SECONDS,
        send_timeout=SEND_TIMEOUT_SECONDS,
        # On SIGTERM/SIGINT sse-starlette sets ``shutdown_event``; the feed then ends its body
        # properly (uvicorn waits for open responses before the lifespan's shutdown runs).
        shutdown_event=feed.shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
        data_sender_callable=feed.close_on_shutdown,
    )


class Subscription:
    """One client's mailbox, touched only on its event loop: the latest change per key.

    A slow client gets the newest figures, not every step; past ``limit`` keys the mailbox is
    emptied and the client told to resync, so memory stays bounded whatever the client does.
    """

    def __init__(
        self, stock_filter: StockFilter, loop: asyncio.AbstractEventLoop, limit: int
    ) -> None:
        self.filter = stock_filter
        self.loop = loop
        self.limit = limit
        self.closed = False
        self._pending: dict[Key, StockChange] = {}
        self._overflowed = False
        self._ready = asyncio.Event()

    def deliver(self, changes: list[StockChange]) -> None:
        for change in changes:
            earlier = self._pending.pop(change.key, None)
            if earlier is None and len(self._pending) >= self.limit:
                self._pending.clear()  # too far behind: the client re-reads instead
                self._overflowed = True
            self._pending[change.key] = change if earlier is None else change.after(earlier)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self, timeout: float) -> tuple[list[StockChange], bool] | None:
        """Waits up to ``timeout`` s; returns (changes, oldest first; whether some were dropped),
        or None once the subscription is closed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        self._ready.clear()
        if self.closed:
            return None
        changes = sorted(self._pending.values(), key=lambda c: c.seq)
        self._pending.clear()
        overflowed, self._overflowed = self._overflowed, False
        return changes, overflowed


class Feed:
    """One client's stream: subscribe, replay what it missed, then follow live changes, for
    ``seconds`` (then the client reconnects with its Last-Event-ID, and is authenticated
    again)."""

    def __init__(
        self,
        hub: StockStreamHub,
        wanted: StockFilter,
        after: int | None,
        *,
        seconds: float = STREAM_SECONDS,
    ) -> None:
        self.hub = hub
        self.wanted = wanted
        self.after = after
        self.seconds = seconds
        self.shutdown = anyio.Event()
        self._sub: Subscription | None = None

    async def close_on_shutdown(self) -> None:
        await self.shutdown.wait()
        if self._sub is not None:
            self._sub.close()

    async def events(self) -> AsyncIterator[ServerSentEvent]:
        # Subscribed before the replay is read, so no change falls between the two.
        self._sub = sub = Subscription(self.wanted, asyncio.get_running_loop(), MAILBOX_KEYS)
        self.hub.subscribe(sub)
        try:
            yield ServerSentEvent(comment="subscribed", retry=RETRY_MS)
            if self.after is not None:
                missed, resync = await run_in_threadpool(self.hub.replay, self.wanted, self.after)
                if resync:
                    yield _resync(resync)
                for change in missed:
                    yield _message(change)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.seconds
            while not self.shutdown.is_set() and (left := deadline - loop.time()) > 0:
                taken = await sub.take(timeout=left)
                if taken is None:  # the server is shutting down
                    return
                changes, dropped = taken
                if dropped:
                    yield _resync("slow_consumer")
                for change in changes:
                    yield _message(change)
        finally:
            self.hub.unsubscribe(sub)


def _message(change: StockChange) -> ServerSentEvent:
    return ServerSentEvent(
        json.dumps(change.data(), separators=(",", ":")), event=EVENT_TYPE, id=str(change.seq)
    )


def _resync(reason: str) -> ServerSentEvent:
    """Changes were not delivered: re-read GET /stock/variants/{id}, then keep listening."""
    return ServerSentEvent(json.dumps({"reason": reason}), event=RESYNC_EVENT)
