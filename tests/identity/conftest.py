"""Fixtures for the identity tests: an event write key and small readers of what was stored."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.identity.models import Identifier, Profile, ProfileMerge, TrackedEvent


@pytest.fixture
def write_key(make_key: Callable[..., str]) -> str:
    return make_key(kind="event", name="web")


@pytest.fixture
def basic(write_key: str) -> dict[str, str]:
    """HTTP Basic with the write key as the user name, as Segment clients send it."""
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


@pytest.fixture
def send(client: TestClient, basic: dict[str, str]) -> Callable[..., Any]:
    def post(path: str, body: dict[str, Any], **headers: str) -> Any:
        return client.post(f"/v1/{path}", json=body, headers={**basic, **headers})

    return post


def events(db: Database) -> list[TrackedEvent]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(TrackedEvent).order_by(TrackedEvent.id)))


def identifier(db: Database, kind: str, value: str) -> Identifier:
    with db.transaction(readonly=True) as session:
        return session.scalars(
            select(Identifier).where(Identifier.kind == kind, Identifier.value == value)
        ).one()


def cluster_of(db: Database, kind: str, value: str) -> str:
    """The cluster id of the profile holding identifier (kind, value)."""
    with db.transaction(readonly=True) as session:
        return session.scalars(
            select(Profile.cluster_id)
            .join(Identifier, Identifier.profile_id == Profile.id)
            .where(Identifier.kind == kind, Identifier.value == value)
        ).one()


def partition(db: Database) -> set[frozenset[tuple[str, str]]]:
    """Identifiers grouped by cluster, independent of profile ids."""
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(Profile.cluster_id, Identifier.kind, Identifier.value).join(
                Identifier, Identifier.profile_id == Profile.id
            )
        ).all()
    groups: dict[str, set[tuple[str, str]]] = {}
    for cluster, kind, value in rows:
        groups.setdefault(cluster, set()).add((kind, value))
    return {frozenset(g) for g in groups.values()}


def merges(db: Database) -> list[ProfileMerge]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(ProfileMerge).order_by(ProfileMerge.created_at)))
