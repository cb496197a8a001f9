"""Find a customer and the customer 360 page: search by every kind of identifier, the
timeline with a channel per entry, merge suggestions with merge/unmerge, roles, escaping."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seamline.db.engine import Database
from tests.console.conftest import post, sign_in
from tests.identity.conftest import cluster_of, merges

Send = Callable[[str, dict[str, Any]], Any]


@pytest.fixture
def send(client: TestClient, make_key: Callable[..., str]) -> Send:
    key = make_key(kind="event", name="web")
    basic = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}

    def call(path: str, body: dict[str, Any]) -> Any:
        r = client.post(f"/v1/{path}", json=body, headers=basic)
        assert r.status_code == 200, r.text
        return r

    return call


def maya(send: Send) -> None:
    """One shopper seen on the marketplace, the web, Instagram and by email."""
    send(
        "track",
        {
            "anonymousId": "dev-a",
            "event": "Product Viewed",
            "properties": {"name": "Kettlebell 16 kg"},
            "context": {"channel": "marketplace"},
            "timestamp": "2026-11-01T10:00:00Z",
        },
    )
    send(
        "page",
        {
            "anonymousId": "dev-a",
            "name": "Yoga mats",
            "context": {"channel": "web"},
            "timestamp": "2026-11-02T10:00:00Z",
        },
    )
    send(
        "identify",
        {
            "anonymousId": "dev-a",
            "traits": {
                "name": "Maya Okafor",
                "email": "Maya.Okafor@Example.com",
                "phone": "+1 212 555 0199",
                "loyalty_card": "KK-1234-5678",
                "address": {"street": "1 Main St", "postal_code": "10001"},
            },
            "context": {"channel": "social"},
            "timestamp": "2026-11-03T10:00:00Z",
        },
    )
    send(
        "track",
        {
            "anonymousId": "dev-a",
            "event": "Email Opened",
            "context": {"channel": "email"},
            "timestamp": "2026-11-04T10:00:00Z",
        },
    )


@pytest.mark.parametrize(
    "query",
    [
        "maya.okafor@example.com",
        "  MAYA.OKAFOR@example.COM ",
        "(212) 555-0199",
        "kk 1234 5678",
        "okafor",
        "Maya",
    ],
)
def test_one_box_finds_the_customer_by_any_identifier(
    admin: TestClient, send: Send, db: Database, query: str
) -> None:
    maya(send)
    page = admin.get("/console/search", params={"q": query})
    assert page.status_code == 200
    cluster = cluster_of(db, "email", "maya.okafor@example.com")
    assert f'href="/console/customers/{cluster}"' in page.text
    assert "Maya Okafor" in page.text


def test_no_match_says_so(admin: TestClient) -> None:
    page = admin.get("/console/search", params={"q": "nobody@example.com"})
    assert page.status_code == 200
    assert "No customer or cart matches" in page.text


def test_the_360_shows_identities_traits_and_a_timeline_across_channels(
    admin: TestClient, send: Send, db: Database
) -> None:
    maya(send)
    cluster = cluster_of(db, "email", "maya.okafor@example.com")
    page = admin.get(f"/console/customers/{cluster}")
    assert page.status_code == 200, page.text
    html = page.text
    assert "<h1>Maya Okafor</h1>" in html
    assert "+12125550199" in html
    assert "KK12345678" in html
    timeline = html.split('id="h-timeline"')[1]
    # Four channels, each with its icon and its label, newest first.
    kinds = re.findall(r'class="chan chan-(\w+)"', timeline)
    assert kinds[:4] == ["email", "social", "web", "marketplace"]
    assert timeline.count("static/icons.svg#") >= 4
    # The channel filter narrows the timeline.
    only_web = admin.get(f"/console/customers/{cluster}", params={"channel": "web"}).text
    assert re.findall(r'class="chan chan-(\w+)"', only_web.split('id="h-timeline"')[1]) == ["web"]


def test_timeline_pages_by_cursor(admin: TestClient, send: Send, db: Database) -> None:
    for i in range(30):
        send(
            "track",
            {
                "anonymousId": "dev-b",
                "event": f"Step {i}",
                "timestamp": f"2026-10-01T10:{i:02d}:00Z",
            },
        )
    cluster = cluster_of(db, "anonymous_id", "dev-b")
    first = admin.get(f"/console/customers/{cluster}").text
    assert "Step 29" in first
    assert "Step 5<" in first
    assert "Step 0<" not in first
    assert "Step 4<" not in first
    link = re.search(r'href="(/console/customers/[^"]+cursor=[^"]+)"', first)
    assert link, "no link to older entries"
    older = admin.get(link.group(1).replace("&amp;", "&")).text
    assert "Step 0<" in older
    assert "Step 4<" in older
    assert "Step 29<" not in older


def test_merge_a_suggestion_and_undo_it(admin: TestClient, send: Send, db: Database) -> None:
    for anon, first in (("a-jon", "Jon"), ("a-john", "John")):
        send(
            "identify",
            {
                "anonymousId": anon,
                "traits": {
                    "first_name": first,
                    "last_name": "Smith",
                    "address": {"street": "1 High St", "postal_code": "SW1A 1AA"},
                },
            },
        )
    jon = cluster_of(db, "anonymous_id", "a-jon")
    john = cluster_of(db, "anonymous_id", "a-john")
    page = admin.get(f"/console/customers/{jon}").text
    assert "Same person?" in page
    assert "John Smith" in page
    r = post(admin, f"/console/customers/{jon}/merge", {"other_id": john})
    assert r.status_code == 303
    assert cluster_of(db, "anonymous_id", "a-jon") == cluster_of(db, "anonymous_id", "a-john")
    [merge] = [m for m in merges(db) if m.undone_at is None]
    r = post(admin, f"/console/customers/{jon}/unmerge", {"merge_id": merge.id})
    assert r.status_code == 303
    assert cluster_of(db, "anonymous_id", "a-jon") != cluster_of(db, "anonymous_id", "a-john")


def test_an_associate_reads_customers_but_may_not_merge(
    client: TestClient, make_staff: Callable[..., str], send: Send, db: Database, shop: Any
) -> None:
    send("identify", {"anonymousId": "a1", "traits": {"name": "Ann One", "postal_code": "1"}})
    send("identify", {"anonymousId": "a2", "traits": {"name": "Ann One", "postal_code": "1"}})
    sign_in(client, make_staff("associate", locations=(shop.store,)))
    one = cluster_of(db, "anonymous_id", "a1")
    two = cluster_of(db, "anonymous_id", "a2")
    page = client.get(f"/console/customers/{one}")
    assert page.status_code == 200
    assert "Merge with this customer" not in page.text
    r = post(client, f"/console/customers/{one}/merge", {"other_id": two})
    assert r.status_code == 303  # back to the page, with the refusal on top
    assert merges(db) == []
    shown = client.get(r.headers["location"])
    assert 'class="flash error"' in shown.text


def test_an_unknown_customer_is_a_page_not_json(
    client: TestClient, make_staff: Callable[..., str]
) -> None:
    sign_in(client, make_staff("marketer"))
    r = client.get("/console/customers/prf_nope")
    assert r.status_code == 404
    assert "text/html" in r.headers["content-type"]


def test_script_in_a_name_is_shown_as_text(admin: TestClient, send: Send, db: Database) -> None:
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    send(
        "identify",
        {"anonymousId": "evil", "traits": {"name": payload, "email": "evil@example.com"}},
    )
    send("track", {"anonymousId": "evil", "event": payload, "properties": {"note": payload}})
    cluster = cluster_of(db, "anonymous_id", "evil")
    for url in (f"/console/customers/{cluster}", "/console/search?q=evil@example.com"):
        html = admin.get(url).text
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;alert" in html
