"""Sign-in, sessions, CSRF and security headers of the console."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.console.conftest import PASSWORD, csrf_in, form_token, sign_in


def test_pages_need_a_signed_in_member(client: TestClient) -> None:
    r = client.get("/console/search?q=x", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?next=%2Fconsole%2Fsearch%3Fq%3Dx"


def test_sign_in_and_out(client: TestClient, make_staff: Callable[..., str]) -> None:
    email = make_staff("advisor")
    page = client.get("/console/login")
    token = csrf_in(page.text)
    r = client.post(
        "/console/login",
        data={
            "email": email,
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/console/search?q=a",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/console/search?q=a"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie.replace("Lax", "lax")
    home = client.get("/console/")
    assert home.status_code == 200
    assert "Advisor Tester" in home.text
    r = client.post(
        "/console/logout", data={"csrf_token": form_token(client)}, follow_redirects=False
    )
    assert r.status_code == 303
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_wrong_password_and_lock_out(client: TestClient, make_staff: Callable[..., str]) -> None:
    email = make_staff("admin")
    for _ in range(4):
        token = csrf_in(client.get("/console/login").text)
        r = client.post(
            "/console/login", data={"email": email, "password": "nope" * 4, "csrf_token": token}
        )
        assert r.status_code == 401
        assert "Wrong email or password" in r.text
    # The fifth failure locks the account; then even the right password is refused.
    token = csrf_in(client.get("/console/login").text)
    r = client.post(
        "/console/login", data={"email": email, "password": "nope" * 4, "csrf_token": token}
    )
    assert r.status_code == 429
    token = csrf_in(client.get("/console/login").text)
    r = client.post(
        "/console/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 429
    assert "locked" in r.text


def test_login_form_needs_its_token(client: TestClient, make_staff: Callable[..., str]) -> None:
    email = make_staff()
    client.get("/console/login")
    r = client.post(
        "/console/login", data={"email": email, "password": PASSWORD, "csrf_token": "forged"}
    )
    assert r.status_code == 403
    assert "seamline_staff" not in r.headers.get("set-cookie", "")


def test_state_changes_need_the_csrf_token(admin: TestClient) -> None:
    r = admin.post("/console/logout", data={}, follow_redirects=False)
    assert r.status_code == 403
    assert "security token" in r.text
    r = admin.post("/console/logout", data={"csrf_token": "x" * 32}, follow_redirects=False)
    assert r.status_code == 403
    # Still signed in: the forged sign-out did nothing.
    assert admin.get("/console/", follow_redirects=False).status_code == 200


def test_a_form_from_another_site_is_refused(admin: TestClient) -> None:
    r = admin.post(
        "/console/logout",
        data={"csrf_token": form_token(admin)},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert admin.get("/console/", follow_redirects=False).status_code == 200


def test_pages_carry_a_strict_content_security_policy(admin: TestClient) -> None:
    r = admin.get("/console/")
    csp = r.headers["content-security-policy"]
    assert "unsafe-inline" not in csp
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-frame-options"] == "DENY"
    # No inline script or style anywhere in the page.
    assert "<script>" not in r.text
    assert "<style" not in r.text
    assert " style=" not in r.text
    assert admin.get("/console/static/console.css").status_code == 200


def test_next_never_leaves_the_console(client: TestClient, make_staff: Callable[..., str]) -> None:
    email = make_staff()
    token = csrf_in(client.get("/console/login").text)
    r = client.post(
        "/console/login",
        data={
            "email": email,
            "password": PASSWORD,
            "csrf_token": token,
            "next": "https://evil.example/x",
        },
        follow_redirects=False,
    )
    assert r.headers["location"] == "/console/"


def test_unknown_console_page_is_a_page_not_json(admin: TestClient) -> None:
    r = admin.get("/console/nowhere")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "no such page" in r.text


def test_sign_in_helper(client: TestClient, make_staff: Callable[..., str]) -> None:
    sign_in(client, make_staff("marketer"))
    assert "Marketer Tester" in client.get("/console/").text


def test_a_nul_in_the_sign_in_form_is_a_wrong_password_not_an_error(
    client: TestClient, make_staff: Callable[..., str]
) -> None:
    # PostgreSQL cannot compare text holding NUL: this was a 500 there.
    email = make_staff()
    for sent in ("a\x00b@example.com", email + "\x00"):
        token = csrf_in(client.get("/console/login").text)
        r = client.post(
            "/console/login",
            data={"email": sent, "password": PASSWORD, "csrf_token": token},
        )
        assert r.status_code == 401
        assert "Wrong email or password" in r.text
