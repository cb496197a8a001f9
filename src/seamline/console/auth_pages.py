"""Sign in, sign out, and the console's front page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from .security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Staff,
    check_origin,
    db_of,
    load_user,
    new_login_csrf,
    secure_cookies,
    tokens_match,
)
from .web import PREFIX, redirect, render, same_origin_path

router = APIRouter()


def _login_page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    token = new_login_csrf()
    nxt = same_origin_path(request, request.query_params.get("next"), PREFIX + "/")
    response = render(request, "login.html", status=status, csrf_token=token, next=nxt, error=error)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
    )
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    if load_user(request) is not None:
        return redirect(same_origin_path(request, request.query_params.get("next"), PREFIX + "/"))
    return _login_page(request)


@router.post("/login")
def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    from seamline.staff import service as staff

    check_origin(request)
    if not tokens_match(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
        return _login_page(request, error="The form expired. Please sign in again.", status=403)
    with db_of(request).transaction() as session:
        outcome = staff.login(
            session,
            email=email,
            password=password,
            user_agent=request.headers.get("user-agent"),
        )
    if outcome.error == "locked":
        until = outcome.locked_until.strftime("%H:%M UTC") if outcome.locked_until else "later"
        return _login_page(
            request,
            error=f"Too many failed attempts: this account is locked until {until}.",
            status=429,
        )
    if outcome.error or outcome.token is None:
        return _login_page(request, error="Wrong email or password.", status=401)
    response = redirect(same_origin_path(request, next, PREFIX + "/"))
    response.set_cookie(
        SESSION_COOKIE,
        outcome.token,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request, user: Staff) -> Response:
    from seamline.staff import service as staff

    token = request.cookies.get(SESSION_COOKIE, "")

    def _end() -> None:
        with db_of(request).transaction() as session:
            staff.logout(session, token)

    await run_in_threadpool(_end)
    response = redirect(f"{PREFIX}/login", notice="Signed out.")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


@router.get("/")
def dashboard(request: Request, user: Staff) -> Response:
    return render(request, "dashboard.html")


@router.get("")
def bare_prefix() -> Response:
    return redirect(PREFIX + "/")
