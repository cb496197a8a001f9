"""The FastAPI app factory: everything an API process needs, built from settings."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from seamline import __version__
from seamline.api import problems
from seamline.api.deps import SCOPE_EXTENSION
from seamline.api.idempotency import IdempotencyMiddleware, self_keyed_routes
from seamline.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from seamline.api.openapi import finish_openapi
from seamline.db.engine import Database
from seamline.events import registry
from seamline.runtime import Runtime, build_runtime
from seamline.settings import Settings, get_settings

API_PREFIX = "/api/v1"


def create_app(
    settings: Settings | None = None,
    *,
    embedded_worker: bool = False,
    runtime: Runtime | None = None,
) -> FastAPI:
    """Build the app. ``embedded_worker`` runs the outbox worker in this process (``serve``)."""
    settings = settings or get_settings()
    rt = runtime or build_runtime(settings)
    registry.load(settings.plugins)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from seamline.inventory.stream import StockStreamHub

        stop = threading.Event()
        app.state.stock_stream = stock_stream = StockStreamHub(rt.db)
        stock_stream.start()
        thread: threading.Thread | None = None
        if embedded_worker:
            worker = rt.worker()
            thread = threading.Thread(
                target=worker.run_forever,
                args=(stop, settings.worker_poll_seconds),
                name="seamline-worker",
                daemon=True,
            )
            thread.start()
        try:
            yield
        finally:
            stock_stream.stop()
            stop.set()
            rt.db.wakeup.set()
            if thread is not None:
                thread.join(timeout=10)
            if runtime is None:
                rt.close()

    app = FastAPI(
        title="Seamline",
        version=__version__,
        summary="One customer, one cart, one stock pool, one order book across every channel.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = rt.db
    app.state.runtime = rt
    app.state.secret_box = rt.box

    problems.install(app)
    _install_system_routes(app, rt)  # first: probes and scrapes are matched at once
    _include_routers(app)
    _install_docs(app)
    from seamline.console.app import install as install_console

    install_console(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            app.openapi_schema = finish_openapi(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    # Added innermost first: the request context wraps everything, then the body limit,
    # then idempotency (which needs the buffered body).
    app.add_middleware(
        IdempotencyMiddleware,
        db=rt.db,
        box=rt.box,
        ttl=timedelta(hours=settings.idempotency_ttl_hours),
        lock=timedelta(seconds=settings.idempotency_lock_seconds),
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware)
    return app


def _include_routers(app: FastAPI) -> None:
    from seamline.carts.api import router as carts
    from seamline.carts.lists_api import router as saved_lists
    from seamline.catalog.api import router as catalog
    from seamline.channels.api import router as channels
    from seamline.events.api import router as events
    from seamline.identity.api import router as tracking
    from seamline.identity.consent_api import router as consent
    from seamline.identity.duplicates_api import router as duplicates
    from seamline.identity.privacy_api import router as privacy
    from seamline.identity.profiles_api import router as customers
    from seamline.inventory.api import router as locations
    from seamline.inventory.availability_api import router as availability
    from seamline.inventory.stock_api import router as stock
    from seamline.inventory.stream_api import router as stock_stream
    from seamline.orders.api import carrier_router as carriers
    from seamline.orders.api import router as orders
    from seamline.orders.checkout_api import router as checkout
    from seamline.orders.returns_api import router as returns
    from seamline.payments.api import router as payments
    from seamline.pricing.api import router as pricing

    # Segment-compatible paths (/v1/track …) have no /api/v1 prefix: clients append them to a host.
    app.include_router(tracking)
    # Routes are tried in order, and trying one costs a few microseconds (FastAPI's included
    # routers re-check every route before theirs: ~0.7 ms to reach the last one), so the calls
    # made most often come first — the event API above, then checkout, carts and the customer
    # 360. Order decides nothing else: no path of one route matches another's
    # (tests/test_routes.py).
    for router in (
        checkout,
        carts,
        customers,
        orders,
        channels,
        events,
        catalog,
        locations,
        stock,
        availability,
        stock_stream,
        consent,
        privacy,
        duplicates,
        pricing,
        saved_lists,
        carriers,
        returns,
        payments,
    ):
        app.include_router(router, prefix=API_PREFIX)
        self_keyed_routes(app, router, prefix=API_PREFIX)


def _install_system_routes(app: FastAPI, rt: Runtime) -> None:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Readiness: the database answers and, when configured, NATS too."""
        checks: dict[str, str] = {}

        def db_ok() -> bool:
            try:
                with rt.db.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            except Exception:
                return False
            return True

        checks["database"] = "ok" if await run_in_threadpool(db_ok) else "unavailable"
        if rt.stream is not None:
            ok = await run_in_threadpool(rt.stream.ping)
            checks["nats"] = "ok" if ok else "unavailable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> HTMLResponse:
        from seamline.console.web import home_page

        return home_page(request)


def _install_docs(app: FastAPI) -> None:
    """API reference from the installed ``swagger-ui-bundle`` package: no CDN, works offline."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/_docs", StaticFiles(directory=str(swagger_ui_path)), name="swagger-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Seamline API",
            swagger_js_url="/_docs/swagger-ui-bundle.js",
            swagger_css_url="/_docs/swagger-ui.css",
            swagger_favicon_url="/_docs/favicon-32x32.png",
            # Swagger UI otherwise fetches a validity badge from validator.swagger.io for
            # every non-local deployment: a third-party request that also leaks the URL.
            swagger_ui_parameters={"validatorUrl": None},
        )


__all__ = ["API_PREFIX", "SCOPE_EXTENSION", "Database", "create_app"]
