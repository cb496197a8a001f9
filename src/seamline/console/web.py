"""Console pages."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from seamline import __version__

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)

# Only our own origin; no inline script, so injected markup can never run.
CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'"
)


def home_page(request: Request) -> HTMLResponse:
    html = _env.get_template("home.html").render(version=__version__, base=str(request.base_url))
    return HTMLResponse(html, headers={"Content-Security-Policy": CSP})
