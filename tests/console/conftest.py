"""Console fixtures: staff members of every role, signed-in clients, the orders tests' shop."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from seamline.db.engine import Database
from seamline.staff import service as staff_service
from tests.orders.conftest import Shop, make_cart, shop  # noqa: F401 (fixtures)

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> None:
    page = client.get("/console/login")
    assert page.status_code == 200, page.text
    r = client.post(
        "/console/login",
        data={"email": email, "password": password, "csrf_token": csrf_in(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert "seamline_staff" in r.headers.get("set-cookie", "")


def csrf_in(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def form_token(client: TestClient) -> str:
    """The signed-in member's CSRF token, as any console page carries it."""
    return csrf_in(client.get("/console/").text)


def post(
    client: TestClient, url: str, data: dict[str, object] | None = None, **kw: object
) -> object:
    """Send a console form with its CSRF token; redirects are not followed."""
    body = {"csrf_token": form_token(client), **(data or {})}
    return client.post(url, data=body, follow_redirects=False, **kw)  # type: ignore[arg-type]


@pytest.fixture
def make_staff(db: Database) -> Callable[..., str]:
    counter = iter(range(1_000_000))

    def make(role: str = "admin", locations: tuple[str, ...] = (), email: str | None = None) -> str:
        email = email or f"{role}{next(counter)}@example.com"
        with db.transaction() as session:
            staff_service.create_user(
                session,
                email=email,
                name=f"{role.title()} Tester",
                role=role,
                password=PASSWORD,
                location_ids=locations,
            )
        return email

    return make


@pytest.fixture
def admin(client: TestClient, make_staff: Callable[..., str]) -> TestClient:
    sign_in(client, make_staff("admin"))
    return client


@pytest.fixture
def other_client(app: FastAPI) -> Iterator[TestClient]:
    """A second browser (its own cookies) on the same app."""
    with TestClient(app) as c:
        yield c
