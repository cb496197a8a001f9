"""The customer 360: everything about one person in one read, from any profile of the cluster.

A handful of indexed queries, each keyed by the cluster's profile ids and each returning only
what is shown (current traits chosen in SQL, metrics summed in SQL, one page of the timeline);
no Python loop runs over a history. Module order: profiles (cluster lookup) ← consent,
metrics, preferences, timeline ← this module. See docs/customer-360.md.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from seamline.identity import consent, metrics, preferences, profiles, timeline


def customer_360(session: Session, profile_id: str) -> dict[str, Any]:
    """The whole cluster of ``profile_id``: members, identifiers, current traits, consent,
    purchase metrics and channels, preferences and advisor, and the latest timeline items."""
    cluster_id, members = profiles.cluster_of(session, profile_id)
    latest, _ = timeline.page(session, members, limit=timeline.LATEST)
    chosen = preferences.cluster_preferences(session, members)
    return {
        "profile_id": profile_id,
        "cluster_id": cluster_id,
        "profile_ids": members,
        "identifiers": profiles.identifiers(session, members),
        "traits": profiles.current_traits(session, members),
        "consent": consent.current_for_profiles(session, members),
        "metrics": metrics.cluster_metrics(session, members),
        "preferences": chosen["preferences"],
        "advisor": chosen["advisor"],
        "events": latest,
    }
