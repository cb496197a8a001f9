"""The console mounted on the API app under ``/console``: routers, static assets, error pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from seamline.kit.errors import SeamlineError

from .security import CsrfRejected, LoginRequired
from .web import PREFIX, STATIC_DIR, redirect, render, same_origin_path

Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def _routers() -> list[APIRouter]:
    from . import auth_pages, carts, customers, inventory, orders, products

    return [m.router for m in (auth_pages, customers, products, inventory, carts, orders)]


def install(app: FastAPI) -> None:
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(STATIC_DIR)), name="console-static")
    for router in _routers():
        app.include_router(router, prefix=PREFIX, include_in_schema=False)
    _wrap_handler(app, SeamlineError)
    _wrap_handler(app, StarletteHTTPException)
    _wrap_handler(app, RequestValidationError)

    @app.exception_handler(LoginRequired)
    def _login(request: Request, exc: LoginRequired) -> Response:
        return redirect(exc.next_path)


def _wrap_handler(app: FastAPI, exc_type: type[Exception]) -> None:
    """Console requests get pages (or a redirect with a notice); API requests keep problem+json."""
    previous: Handler = app.exception_handlers[exc_type]

    async def handler(request: Request, exc: Exception) -> Response:
        if request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/"):
            return console_error(request, exc)
        result = previous(request, exc)
        if isinstance(result, Response):
            return result
        return await result

    app.add_exception_handler(exc_type, handler)


def console_error(request: Request, exc: Exception) -> Response:
    status, title, detail, fields = 500, "Something went wrong", "", []
    if isinstance(exc, SeamlineError):
        status, title, detail = exc.status, exc.title, exc.detail
        fields = [f"{e.path.removeprefix('body.')}: {e.message}" for e in exc.errors]
    elif isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        title = "Not found" if status == 404 else "Request refused"
        detail = "There is no such page." if status == 404 else str(exc.detail)
    elif isinstance(exc, RequestValidationError):
        status, title, detail = 422, "Incomplete form", "Some fields are missing or invalid."
        fields = [
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}"
            for e in exc.errors()
        ]
    # A refused action goes back to the page it came from, with the reason on top; a refused
    # page (or a forged form) is shown as an error page.
    if request.method == "POST" and not isinstance(exc, CsrfRejected) and status < 500:
        back = same_origin_path(request, request.headers.get("referer"), PREFIX + "/")
        text = detail + (" — " + "; ".join(fields) if fields else "")
        return redirect(back, error=text or title)
    return render(request, "error.html", status=status, title=title, detail=detail, fields=fields)
