"""Preferences set for a customer (size, favourite store, preferred contact channel) and the
staff member assigned as their advisor.

A setting is stored on the cluster's canonical profile (the account, when there is one) and
kept per name; the read takes, per name, the latest setting across the cluster's profiles, so
a merge shows the newest choice and an unmerge gives each side back its own. A ``null``
setting is a setting too: it clears the value, including one set on another profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from seamline.db.dialect import insert_ignoring_conflict
from seamline.events.outbox import emit
from seamline.identity.customer_models import ProfilePreference
from seamline.identity.profiles import cluster_of
from seamline.identity.schemas import PreferencesIn
from seamline.inventory.models import Location
from seamline.kit import clock
from seamline.kit.errors import FieldError, Unprocessable

PREFERENCES_CHANGED = "profile.preferences_changed"
ADVISOR = "advisor"
NAMES = ("size", "favourite_store", "preferred_channel", ADVISOR)
SOURCE = "api"


_PREF = ProfilePreference.__table__.c
_PREFERENCES = select(_PREF.name, _PREF.value, _PREF.set_at, _PREF.set_by, _PREF.profile_id).where(
    _PREF.profile_id.in_(bindparam("members", expanding=True))
)


def cluster_preferences(session: Session, members: Sequence[str]) -> dict[str, Any]:
    """The current preferences and advisor of a cluster: per name, the latest setting
    (at most four rows per profile, chosen here).

    customer360.SQL_360 makes the same choice for the 360 on PostgreSQL: change both."""
    rows = session.connection().execute(_PREFERENCES, {"members": list(members)}).all()
    current: dict[str, Any] = {}
    for row in rows:
        held = current.get(row.name)
        if held is None or (row.set_at, row.profile_id) > (held.set_at, held.profile_id):
            current[row.name] = row
    preferences: dict[str, Any] = {name: None for name in NAMES if name != ADVISOR}
    updated = [row.set_at for name, row in current.items() if name != ADVISOR]
    for name in preferences:
        if name in current:
            preferences[name] = current[name].value
    preferences["updated_at"] = max(updated) if updated else None
    advisor = current.get(ADVISOR)
    if advisor is None or not isinstance(advisor.value, dict):
        return {"preferences": preferences, "advisor": None}
    return {
        "preferences": preferences,
        "advisor": {
            "staff_id": advisor.value.get("staff_id"),
            "name": advisor.value.get("name"),
            "assigned_at": advisor.set_at,
            "assigned_by": advisor.set_by,
        },
    }


def set_preferences(
    session: Session, profile_id: str, data: PreferencesIn, *, by: str | None
) -> dict[str, Any]:
    """Set the fields sent (``null`` clears one; fields left out stay as they are) on the
    cluster of ``profile_id``; the favourite store must be an existing location. Emits
    ``profile.preferences_changed`` when anything was sent."""
    cluster_id, members = cluster_of(session, profile_id)
    changes = data.model_dump(include=data.model_fields_set)
    store = changes.get("favourite_store")
    if store is not None and session.get(Location, store) is None:
        raise Unprocessable(
            f"no location {store}",
            code="location_not_found",
            errors=[FieldError("body.favourite_store", "no such location", "unknown")],
        )
    if not changes:
        return cluster_preferences(session, members)
    now = clock.now()
    for name, value in changes.items():
        row = {
            "profile_id": cluster_id,
            "name": name,
            "value": value,
            "set_at": now,
            "set_by": by,
            "source": SOURCE,
        }
        if not insert_ignoring_conflict(session, ProfilePreference, row, on=("profile_id", "name")):
            held = session.get(ProfilePreference, (cluster_id, name), with_for_update=True)
            if held is not None:
                held.value, held.set_at, held.set_by, held.source = value, now, by, SOURCE
    session.flush()
    emit(
        session,
        PREFERENCES_CHANGED,
        aggregate_type="profile",
        aggregate_id=cluster_id,
        payload={"profile_id": cluster_id, "changed": changes, "set_by": by},
    )
    return cluster_preferences(session, members)
