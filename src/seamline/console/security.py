"""Who is using the console, and proof that a form came from the console.

A signed-in staff member carries an opaque session cookie (HttpOnly, SameSite=Lax, Secure over
HTTPS); the session row holds a CSRF token that every state-changing form must send back
(``csrf_token``), compared in constant time. The login form, before any session exists, uses a
double-submit cookie. A request whose ``Origin`` names another site is refused as well.
Roles and locations are checked by the console's action layer (``console/actions.py``) and the
domain services, never only by hiding a button.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from starlette.datastructures import FormData

from seamline.auth.service import Caller
from seamline.db.engine import Database
from seamline.kit.errors import FieldError, Forbidden, Unprocessable

from .web import PREFIX

SESSION_COOKIE = "seamline_staff"
LOGIN_CSRF_COOKIE = "seamline_login_csrf"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class ConsoleUser:
    """The signed-in staff member, detached from any database session."""

    id: str
    name: str
    email: str
    role: str
    role_label: str
    location_ids: tuple[str, ...]
    caller: Caller
    csrf_token: str

    def can(self, scope: str) -> bool:
        return scope in self.caller.scopes


class LoginRequired(Exception):
    """No valid session: the handler sends the browser to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRejected(Forbidden):
    code = "csrf_failed"


def db_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def secure_cookies(request: Request) -> bool:
    return request.url.scheme == "https"


def load_user(request: Request) -> ConsoleUser | None:
    from seamline.staff import service as staff
    from seamline.staff.roles import ROLE_LABELS

    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with db_of(request).transaction() as session:
        login = staff.session_user(session, token)
        if login is None:
            return None
        user = login.user
        return ConsoleUser(
            id=user.id,
            name=user.name,
            email=user.email,
            role=user.role,
            role_label=ROLE_LABELS.get(user.role, user.role),
            location_ids=tuple(login.caller.location_ids),
            caller=login.caller,
            csrf_token=login.csrf_token,
        )


def login_url(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{PREFIX}/login?next={quote(here, safe='')}"


def check_origin(request: Request) -> None:
    """Refuse a state change whose Origin (or Referer) header names another site."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        if origin == "null":
            raise CsrfRejected("this form came from an opaque origin", code="csrf_failed")
        return
    if urlsplit(origin).netloc != request.url.netloc:
        raise CsrfRejected("this form was sent from another site", code="csrf_failed")


def refuse_nul(request: Request, form: FormData | None = None) -> None:
    """Refuse a request whose path, query or form carries a NUL character (422), before any
    route reads it: PostgreSQL cannot store or even compare text with NUL, so it would
    otherwise surface as a server error (or be written on SQLite only)."""
    fields: list[tuple[str, object]] = [
        *request.path_params.items(),
        *request.query_params.multi_items(),
        *(form.multi_items() if form is not None else ()),
    ]
    bad = sorted({name for name, value in fields if isinstance(value, str) and "\x00" in value})
    if bad:
        raise Unprocessable(
            "text may not contain NUL characters",
            errors=[FieldError(name, "contains a NUL character", "invalid") for name in bad],
        )


def tokens_match(sent: object, expected: str | None) -> bool:
    return (
        isinstance(sent, str)
        and bool(expected)
        and hmac.compare_digest(sent.encode(), (expected or "").encode())
    )


async def staff_required(request: Request) -> ConsoleUser:
    """Dependency of every console page and action: the staff member, CSRF-checked on writes."""
    from starlette.concurrency import run_in_threadpool

    user = await run_in_threadpool(load_user, request)
    if user is None:
        raise LoginRequired(login_url(request))
    request.state.staff = user
    if request.method in SAFE_METHODS:
        refuse_nul(request)
        return user
    check_origin(request)
    form: FormData = await request.form()
    if not tokens_match(form.get(CSRF_FIELD), user.csrf_token):
        raise CsrfRejected(
            "the form's security token is missing or stale; reload the page and try again"
        )
    refuse_nul(request, form)
    return user


Staff = Annotated[ConsoleUser, Depends(staff_required)]


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)
