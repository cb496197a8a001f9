"""Rendering for the console: one Jinja environment, security headers, flash notices.

Every page goes through :func:`render`, which sets a Content-Security-Policy without
``unsafe-inline`` (no inline script or style anywhere: injected markup can never run) and
``Cache-Control: no-store`` (pages carry personal data). Templates autoescape everything.
"""

from __future__ import annotations

import json
import secrets
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from seamline import __version__
from seamline.kit.money import Money

PREFIX = "/console"
STATIC_DIR = Path(__file__).parent / "static"
FLASH_COOKIE = "seamline_flash"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# One icon (a symbol in static/icons.svg) and one label per channel kind; the label is always
# written next to the icon, so colour and shape are never the only signal.
CHANNEL_KINDS: dict[str, str] = {
    "web": "Web",
    "app": "App",
    "store": "Store",
    "marketplace": "Marketplace",
    "social": "Social",
    "email": "Email",
    "sms": "SMS",
    "push": "Push",
    "phone": "Phone",
    "chat": "Chat",
    "api": "API",
}


def channel_icon(kind: str | None) -> str:
    return kind if kind in CHANNEL_KINDS else "other"


def channel_label(kind: str | None) -> str:
    return CHANNEL_KINDS.get(kind or "", (kind or "Other").title())


def money(amount: int | None, currency: str | None) -> str:
    if amount is None or not currency:
        return "—"
    try:
        return Money(int(amount), currency).format()
    except (TypeError, ValueError):
        return f"{amount} {currency}"


def when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return parsed.strftime("%Y-%m-%d %H:%M UTC")
    return value.strftime("%Y-%m-%d %H:%M UTC")


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


# The signed-in member's CSRF token while a page renders: macros imported without context
# (``{% from "macros.html" import csrf %}``) still write the right token.
_csrf: ContextVar[str] = ContextVar("console_csrf", default="")


def current_csrf() -> str:
    return _csrf.get()


_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(
    money=money, when=when, pretty_json=pretty_json, urlquote=lambda v: quote(str(v), safe="")
)
_env.globals.update(
    channel_icon=channel_icon,
    channel_label=channel_label,
    version=__version__,
    prefix=PREFIX,
    current_csrf=current_csrf,
    form_key=lambda: secrets.token_urlsafe(18),  # a one-time key for console/forms.py
)


def html(content: str, *, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers=SECURITY_HEADERS)


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with the signed-in staff member (if any) and any flash notice."""
    flash = _read_flash(request)
    user = getattr(request.state, "staff", None)
    _csrf.set(getattr(user, "csrf_token", "") or "")
    page = _env.get_template(template).render(
        request=request,
        user=user,
        flash=flash,
        path=request.url.path,
        **context,
    )
    response = html(page, status=status)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    return response


def redirect(url: str, *, notice: str | None = None, error: str | None = None) -> Response:
    """A 303 to ``url`` (POST → redirect → GET), carrying a one-time notice."""
    response = RedirectResponse(url, status_code=303)
    if notice or error:
        value = json.dumps({"kind": "error" if error else "notice", "text": error or notice})
        response.set_cookie(
            FLASH_COOKIE, quote(value), path=PREFIX, httponly=True, samesite="strict"
        )
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _read_flash(request: Request) -> dict[str, str] | None:
    from urllib.parse import unquote

    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(unquote(raw))
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return None
    return {"kind": "error" if data.get("kind") == "error" else "notice", "text": data["text"]}


def same_origin_path(request: Request, url: str | None, default: str) -> str:
    """``url`` if it is a path on this console (never another site), else ``default``."""
    if not url:
        return default
    parts = urlsplit(url)
    if parts.netloc and parts.netloc != request.url.netloc:
        return default
    path = parts.path or default
    if not path.startswith(PREFIX + "/") and path != PREFIX:
        return default
    return path + (f"?{parts.query}" if parts.query else "")


def home_page(request: Request) -> HTMLResponse:
    page = _env.get_template("home.html").render(base=str(request.base_url))
    return html(page)
