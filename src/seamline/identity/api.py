"""Segment-compatible tracking routes (``/v1/track`` … ``/v1/batch``): thin, like every route.

The body is read here rather than by FastAPI because it may be gzip-compressed; decoding and
validation are in wire.py, the rules in ingest.py. The answer is sent only after the commit:
of the stored, resolved calls (``ingest_mode = "sync"``), or of the validated calls written to
the inbox the worker drains (``"queued"``, ingest_queue.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.auth.service import Caller
from seamline.db.engine import Database
from seamline.identity import ingest, ingest_queue, wire
from seamline.identity.schemas import Ack, batch_schema, call_schema
from seamline.kit import clock

router = APIRouter(prefix="/v1", tags=["tracking"])


def _segment(call_type: str | None) -> dict[str, Any]:
    """Route arguments: the ``events:write`` scope, the body's schema, the 400 it may answer."""
    kwargs = scoped("events:write")
    schema = batch_schema() if call_type is None else call_schema(call_type, in_batch=False)
    body = {"required": True, "content": {"application/json": {"schema": schema}}}
    return {
        **kwargs,
        "openapi_extra": {**kwargs["openapi_extra"], "requestBody": body},
        "responses": problem(
            400, "Invalid JSON or gzip, a call over 32 KB, a batch over 500 KB, an invalid call"
        ),
        "response_model_exclude_defaults": True,
    }


async def _accept(request: Request, db: Database, caller: Caller, call_type: str | None) -> Ack:
    received_at = clock.now()
    limit = wire.BATCH_MAX_BYTES if call_type is None else wire.EVENT_MAX_BYTES
    encoding = request.headers.get("content-encoding")
    body = await request.body()
    queued = request.app.state.settings.ingest_mode == "queued"

    def work() -> Ack:
        # Inflating, parsing and validating up to 500 KB is CPU work: off the event loop too.
        document = wire.decode(body, encoding, limit=limit)
        if call_type is None:
            parsed = wire.parse_batch(document)
        else:
            parsed = wire.parse_single(document, call_type)
        if parsed.calls:
            with db.transaction() as session:
                store = ingest_queue.enqueue if queued else ingest.record_calls
                store(session, parsed.calls, key_id=caller.key_id, received_at=received_at)
        return Ack(success=True, rejected=parsed.rejected)

    return await run_in_threadpool(work)


@router.post("/track", **_segment("track"))
async def track(request: Request, db: DB, caller: CurrentCaller) -> Ack:
    """Record something a person did (Segment `track`)."""
    return await _accept(request, db, caller, "track")


@router.post("/identify", **_segment("identify"))
async def identify(request: Request, db: DB, caller: CurrentCaller) -> Ack:
    """Tie a user id to the visitor and record traits (Segment `identify`)."""
    return await _accept(request, db, caller, "identify")


@router.post("/page", **_segment("page"))
async def page(request: Request, db: DB, caller: CurrentCaller) -> Ack:
    """Record a web page view (Segment `page`)."""
    return await _accept(request, db, caller, "page")


@router.post("/screen", **_segment("screen"))
async def screen(request: Request, db: DB, caller: CurrentCaller) -> Ack:
    """Record an app screen view (Segment `screen`)."""
    return await _accept(request, db, caller, "screen")


@router.post("/group", **_segment("group"))
async def group(request: Request, db: DB, caller: CurrentCaller) -> Ack:
    """Associate the person with a company or household (Segment `group`)."""
    return await _accept(request, db, caller, "group")


@router.post("/alias", **_segment("alias"))
async def alias(request: Request, db: DB, caller: CurrentCaller) -> Ack:
    """Join a previous (anonymous) id to a user id (Segment `alias`)."""
    return await _accept(request, db, caller, "alias")


@router.post("/batch", **_segment(None))
async def batch(request: Request, db: DB, caller: CurrentCaller) -> Ack:
    """Up to 500 KB of calls of any type; valid calls are stored, refused ones are listed."""
    return await _accept(request, db, caller, None)


@router.post("/import", **_segment(None))
async def import_(request: Request, db: DB, caller: CurrentCaller) -> Ack:
    """Historical import: the same as `/v1/batch`."""
    return await _accept(request, db, caller, None)
