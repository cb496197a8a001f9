"""Staff roles, the scopes each one holds, and the ``Caller`` a signed-in staff user acts as.

A staff user acts through the same ``Caller`` an API key resolves to (``kind="staff"``), so
every service that checks scopes or locations treats both alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seamline.auth.scopes import SCOPES
from seamline.auth.service import Caller
from seamline.kit.errors import Forbidden

if TYPE_CHECKING:
    from seamline.staff.models import StaffUser

ROLES = ("admin", "associate", "advisor", "marketer")

ROLE_LABELS: dict[str, str] = {
    "admin": "Administrator",
    "associate": "Store associate",
    "advisor": "Advisor / agent",
    "marketer": "Marketer",
}

ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    "associate": frozenset(
        {
            "catalog:read",
            "inventory:read",
            "inventory:write",
            "customers:read",
            "carts:read",
            "carts:write",
            "checkout:write",
            "orders:read",
            "orders:write",
            "pricing:read",
        }
    ),
    "advisor": frozenset(
        {
            "catalog:read",
            "inventory:read",
            "customers:read",
            "customers:write",
            "carts:read",
            "carts:write",
            "checkout:write",
            "orders:read",
            "orders:write",
            "pricing:read",
        }
    ),
    "marketer": frozenset(
        {"catalog:read", "customers:read", "pricing:read", "pricing:write", "events:read"}
    ),
}

# Only associates are bound to locations (their stores); the other roles act everywhere.
LOCATION_BOUND_ROLES = frozenset({"associate"})


def caller_for(user: StaffUser) -> Caller:
    """The caller a signed-in staff user acts as: their role's scopes, an associate's stores."""
    locations = tuple(user.location_ids) if user.role in LOCATION_BOUND_ROLES else ()
    return Caller(
        key_id=user.id,
        kind="staff",
        scopes=ROLE_SCOPES[user.role],
        location_ids=locations,
    )


def require_scope(caller: Caller, scope: str) -> None:
    """403 ``role_forbidden`` unless ``caller`` holds ``scope``."""
    if scope not in caller.scopes:
        raise Forbidden(f"your role may not do this (needs {scope})", code="role_forbidden")
