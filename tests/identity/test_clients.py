"""The official Segment and RudderStack Python clients, unchanged, against a live Seamline."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from seamline.db.engine import Database
from tests.identity.conftest import cluster_of, events, identifier


@pytest.fixture
def errors() -> Iterator[list[Any]]:
    seen: list[Any] = []
    yield seen
    assert seen == [], f"the client reported errors: {seen}"


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_segment_client_lands_events_on_the_right_profile(
    live_server: str, write_key: str, db: Database, errors: list[Any], gzip: bool
) -> None:
    client = SegmentClient(
        write_key,
        host=live_server,
        sync_mode=True,
        gzip=gzip,
        max_retries=0,
        on_error=lambda exc, batch: errors.append(exc),
    )
    client.page(anonymous_id="visitor-1", name="Home", properties={"path": "/"})
    client.track(anonymous_id="visitor-1", event="Product Viewed", properties={"sku": "S-1"})
    client.identify(
        user_id="cus-1",
        anonymous_id="visitor-1",
        traits={"email": "Ann@Example.com", "name": "Ann"},
    )
    client.track(user_id="cus-1", event="Order Completed", message_id="order-1")
    client.track(user_id="cus-1", event="Order Completed", message_id="order-1")  # a retry
    client.screen(user_id="cus-1", name="Cart")
    client.group(user_id="cus-1", group_id="household-7")
    client.alias(previous_id="visitor-2", user_id="cus-1")

    stored = events(db)
    assert [e.type for e in stored].count("track") == 2  # the retry was deduplicated
    assert len(stored) == 7
    person = cluster_of(db, "user_id", "cus-1")
    for kind, value in [
        ("anonymous_id", "visitor-1"),
        ("anonymous_id", "visitor-2"),
        ("email", "ann@example.com"),
    ]:
        assert cluster_of(db, kind, value) == person
    anonymous = identifier(db, "anonymous_id", "visitor-1").profile_id
    assert {e.profile_id for e in stored if e.anonymous_id and not e.user_id} == {anonymous}
    assert all(e.context["library"]["name"] == "analytics-python" for e in stored)


def test_rudderstack_client_batches_gzip_and_lands_events(
    live_server: str, write_key: str, db: Database, errors: list[Any]
) -> None:
    logging.getLogger("rudder").setLevel(logging.CRITICAL)
    client = RudderClient(
        write_key,
        host=live_server,
        gzip=True,
        max_retries=0,
        upload_size=50,
        on_error=lambda exc, batch: errors.append(exc),
    )
    for n in range(30):
        client.track(anonymous_id="device-9", event="Viewed", properties={"n": n})
    client.identify(user_id="cus-9", anonymous_id="device-9", traits={"phone": "+44 20 7946 0018"})
    client.flush()
    client.shutdown()

    stored = events(db)
    assert len(stored) == 31
    assert {e.channel for e in stored} == {"server"}
    assert cluster_of(db, "anonymous_id", "device-9") == cluster_of(db, "user_id", "cus-9")
    assert cluster_of(db, "phone", "+442079460018") == cluster_of(db, "user_id", "cus-9")


def test_wrong_write_key_is_refused_to_the_client(live_server: str, db: Database) -> None:
    failures: list[Any] = []
    client = SegmentClient(
        "ek_not-a-key",
        host=live_server,
        sync_mode=True,
        max_retries=0,
        on_error=lambda exc, batch: failures.append(exc),
    )
    with pytest.raises(Exception, match="401"):
        client.track(user_id="u1", event="x")
    assert events(db) == []
