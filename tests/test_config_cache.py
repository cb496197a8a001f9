"""The per-process configuration cache (db/config_cache.py): values reused while fresh,
forgotten when this process changes a watched table, read afresh by the changing transaction;
and the topology it keeps for checkout (sites, channel policies) following such changes."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.channels.models import Channel
from seamline.db.config_cache import ConfigCache
from seamline.db.engine import Database
from seamline.inventory import availability
from seamline.kit.ids import new_id
from tests.stock_helpers import make_channel, make_location

_cache = ConfigCache("test_channels", (Channel,), seconds=60.0)


def _new_channel(db: Database, name: str) -> str:
    with db.transaction() as session:
        channel = Channel(id=new_id("chn"), kind="web", name=name, handle=new_id("h"))
        session.add(channel)
        return channel.id


def _names(db: Database, loads: list[str]) -> list[str]:
    with db.transaction(readonly=True) as session:

        def load() -> list[str]:
            loads.append("load")
            return list(session.scalars(select(Channel.name).order_by(Channel.name)))

        return _cache.get(session, "names", load)


def test_a_fresh_value_is_reused_and_a_write_through_the_orm_forgets_it(db: Database) -> None:
    loads: list[str] = []
    _new_channel(db, "Alpha")
    _cache.forget_all()
    assert _names(db, loads) == ["Alpha"]
    assert _names(db, loads) == ["Alpha"]
    assert loads == ["load"]  # the second read came from the cache

    channel_id = _new_channel(db, "Beta")  # an ORM insert in this process: forgotten
    assert _names(db, loads) == ["Alpha", "Beta"]
    with db.transaction() as session:
        found = session.get(Channel, channel_id)
        assert found is not None
        found.name = "Gamma"
        session.flush()
        # The changing transaction reads the tables, never a value cached before its change.
        assert _cache.get(session, "names", lambda: ["fresh"]) == ["fresh"]
    assert _names(db, loads) == ["Alpha", "Gamma"]
    assert len(loads) == 3


def test_a_rolled_back_change_leaves_the_cache_usable(db: Database) -> None:
    loads: list[str] = []
    _new_channel(db, "Alpha")
    _cache.forget_all()
    _names(db, loads)
    try:
        with db.transaction() as session:
            session.add(Channel(id=new_id("chn"), kind="web", name="Never", handle=new_id("h")))
            session.flush()
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert _names(db, loads) == ["Alpha"]


def test_checkout_topology_follows_a_location_and_a_rule_changed_through_the_api(
    client: TestClient, db: Database, auth: dict[str, str]
) -> None:
    channel = make_channel(client, auth, "web-topology")
    north = make_location(client, auth, "north", ships=True)
    south = make_location(client, auth, "south", ships=True)
    with db.transaction(readonly=True) as session:
        assert {s.id for s in availability.active_sites(session)} >= {north, south}
        assert set(availability.channel_policy(session, channel).location_ids) >= {north, south}

    r = client.put(
        f"/api/v1/channels/{channel}/stock-rule", json={"location_ids": [south]}, headers=auth
    )
    assert r.status_code == 200, r.text
    with db.transaction(readonly=True) as session:
        policy = availability.channel_policy(session, channel)
        assert (policy.location_ids, policy.restricted, policy.ruled) == ([south], True, True)

    r = client.patch(f"/api/v1/locations/{north}", json={"active": False}, headers=auth)
    assert r.status_code == 200, r.text
    with db.transaction(readonly=True) as session:
        assert north not in {s.id for s in availability.active_sites(session)}
