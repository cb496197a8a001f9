"""Pure ASGI middleware: request ids, access logs and metrics, catch-all errors, body limits."""

from __future__ import annotations

import re
import time
import traceback

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seamline.api.problems import database_unavailable, problem_response, unavailable_response
from seamline.kit.ids import new_id
from seamline.observability import metrics
from seamline.observability.logging import request_id_var

log = structlog.get_logger("seamline.http")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template with its router prefix (a low-cardinality label).

    FastAPI puts the route itself in ``scope["route"]``, whose ``path`` lacks the prefix of
    an included router (``/channels`` for ``/api/v1/channels``); the full template is on the
    effective route context when FastAPI provides one.
    """
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    full = getattr(context, "path_format", None)
    if isinstance(full, str) and full:
        return full
    return getattr(scope.get("route"), "path", None) or "unmatched"


class RequestContextMiddleware:
    """Outermost layer: a request id on every response and log line, metrics, and a last-resort
    handler that turns any unexpected exception into a bare 500 problem (never a stack trace)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = header(scope, b"x-request-id")
        rid = incoming if incoming and _SAFE_REQUEST_ID.match(incoming) else new_id("req")
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if database_unavailable(exc):
                # An outage, not a bug: one line without a traceback, and a 503 to retry.
                log.warning(
                    "database_unavailable",
                    path=scope.get("path"),
                    method=scope.get("method"),
                    error=f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}",
                )
                if not status_holder["started"]:
                    await unavailable_response(scope.get("path"))(scope, receive, send_with_id)
                return
            # A plain traceback under the key ``format_exc_info`` would use, rendered here:
            # the dev console's rich renderer would print every frame's locals (request
            # headers, API keys) and takes seconds doing it, blocking the event loop.
            log.error(
                "unhandled_error",
                path=scope.get("path"),
                method=scope.get("method"),
                exception="".join(traceback.format_exception(exc)),
            )
            if not status_holder["started"]:
                response = problem_response(
                    500,
                    "internal_error",
                    "Something went wrong on our side; it was logged.",
                    instance=scope.get("path"),
                )
                await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            template = route_template(scope)
            method = scope.get("method", "")
            status = int(status_holder["status"])
            metrics.HTTP_REQUESTS.labels(method, template, str(status)).inc()
            metrics.HTTP_LATENCY.labels(method, template).observe(elapsed)
            if template not in ("/metrics", "/healthz"):
                log.info(
                    "request",
                    method=method,
                    path=scope.get("path"),
                    status=status,
                    ms=round(elapsed * 1000, 1),
                )
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with 413 before any handler reads them.

    The body is read once here and replayed to the app, so a lying ``Content-Length`` or a
    chunked upload cannot get past the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = int(scope.get("seamline.body_limit", self.max_bytes))
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        scope["seamline.body"] = body
        await self.app(scope, replay_body(body, receive), send)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(
            413,
            "payload_too_large",
            f"The request body exceeds {limit} bytes.",
            instance=scope.get("path"),
        )
        await response(scope, receive, send)


def replay_body(body: bytes, downstream: Receive) -> Receive:
    """A ``receive`` that hands over the buffered body once, then waits for the real disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await downstream()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
