"""The NATS JetStream relay: every event to ``seamline.<type>``, deduplicated by event id.

nats-py is asyncio-only while the worker is a plain thread, so the relay owns a private event
loop on a daemon thread and the worker submits coroutines to it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
import structlog
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from seamline.events.registry import Leased, Outcome

log = structlog.get_logger("seamline.stream")

STREAM_NAME = "SEAMLINE"
SUBJECT_PREFIX = "seamline"
T = TypeVar("T")


def subject_for(event_type: str) -> str:
    return f"{SUBJECT_PREFIX}.{event_type}"


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

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout * 3)

    async def _connect(self) -> Any:
        if self._nc is None or self._nc.is_closed:
            self._nc = await nats.connect(
                self.url,
                connect_timeout=self.timeout,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
            )
            self._js = self._nc.jetstream(timeout=self.timeout)
            try:
                await self._js.stream_info(self.stream)
            except NotFoundError:
                await self._js.add_stream(
                    StreamConfig(name=self.stream, subjects=[f"{SUBJECT_PREFIX}.>"])
                )
        return self._js

    async def _publish_all(self, items: list[Leased]) -> None:
        js = await self._connect()
        for item in items:
            body = json.dumps(item.event.envelope(), separators=(",", ":")).encode()
            try:
                await js.publish(
                    subject_for(item.event.type), body, headers={"Nats-Msg-Id": item.event.id}
                )
                item.outcome = Outcome(True)
            except Exception as exc:  # one failed publish must not hide the others' results
                item.outcome = Outcome(False, f"{type(exc).__name__}: {exc}"[:500])

    def send(self, items: list[Leased]) -> None:
        try:
            self._run(self._publish_all(items))
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
        await self._nc.flush(timeout=self.timeout)

    def close(self) -> None:
        async def _close() -> None:
            if self._nc is not None and not self._nc.is_closed:
                await self._nc.drain()

        try:
            self._run(_close())
        except Exception:  # closing is best effort
            log.debug("stream_close_failed")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
