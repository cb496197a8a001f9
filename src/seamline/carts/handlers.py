"""Event reactions of the carts domain.

``carts.merge``: when identity resolution joins a profile to a cluster (``profile.merged`` —
an anonymous shopper identified themselves, or staff merged two customers), the cluster's
open carts become one (merge.py states the rule). The worker runs this in the transaction
that marks the delivery done, so it happens once in effect; running it again finds a single
open cart and changes nothing.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from seamline.carts import merge
from seamline.events.registry import Event, on


@on("profile.merged", name="carts.merge")
def merge_on_identify(session: Session, event: Event) -> None:
    profile_id = event.payload.get("profile_id")
    if isinstance(profile_id, str) and profile_id:
        merge.merge_on_identify(session, profile_id)
