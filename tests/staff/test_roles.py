"""Roles: the scopes each one holds, location binding, and refusals."""

from __future__ import annotations

import pytest

from seamline.auth.scopes import SCOPES
from seamline.auth.service import Caller
from seamline.carts.sharing import require_secret
from seamline.db.engine import Database
from seamline.kit.errors import Forbidden
from seamline.staff.roles import ROLE_LABELS, ROLE_SCOPES, ROLES, caller_for, require_scope
from seamline.staff.service import session_user
from tests.staff.helpers import login, make_location, make_user


def test_every_role_has_scopes_from_the_catalogue_and_a_label() -> None:
    assert ROLES == ("admin", "associate", "advisor", "marketer")
    assert set(ROLE_SCOPES) == set(ROLES) == set(ROLE_LABELS)
    for scopes in ROLE_SCOPES.values():
        assert scopes <= set(SCOPES)
    assert ROLE_SCOPES["admin"] == frozenset(SCOPES)
    assert ROLE_LABELS == {
        "admin": "Administrator",
        "associate": "Store associate",
        "advisor": "Advisor / agent",
        "marketer": "Marketer",
    }


def test_role_scope_sets() -> None:
    assert ROLE_SCOPES["marketer"] == {
        "catalog:read",
        "customers:read",
        "pricing:read",
        "pricing:write",
        "events:read",
    }
    assert "inventory:write" in ROLE_SCOPES["associate"]
    assert "customers:write" not in ROLE_SCOPES["associate"]
    assert "customers:write" in ROLE_SCOPES["advisor"]
    assert "inventory:write" not in ROLE_SCOPES["advisor"]
    for role in ("associate", "advisor", "marketer"):
        assert "privacy:write" not in ROLE_SCOPES[role]
        assert "channels:write" not in ROLE_SCOPES[role]


@pytest.mark.parametrize("role", ["admin", "advisor", "marketer"])
def test_callers_of_unbound_roles_act_everywhere(db: Database, role: str) -> None:
    user = make_user(db, role=role)
    caller = caller_for(user)
    assert caller == Caller(user.id, "staff", ROLE_SCOPES[role], ())
    caller.require_location("loc_anywhere")


def test_associate_caller_is_bound_to_their_stores(db: Database) -> None:
    soho, leeds = make_location(db, "soho"), make_location(db, "leeds")
    user = make_user(db, role="associate", location_ids=(soho,))
    caller = caller_for(user)
    assert caller.kind == "staff"
    assert caller.scopes == ROLE_SCOPES["associate"]
    assert caller.location_ids == (soho,)
    caller.require_location(soho)
    with pytest.raises(Forbidden) as exc:
        caller.require_location(leeds)
    assert exc.value.code == "location_out_of_scope"


def test_session_user_carries_the_role_caller(db: Database) -> None:
    soho = make_location(db)
    make_user(db, role="associate", location_ids=(soho,))
    token = login(db).token
    assert token is not None
    with db.transaction() as session:
        staff = session_user(session, token)
    assert staff is not None
    assert staff.caller == caller_for(staff.user)
    assert staff.caller.location_ids == (soho,)


def test_require_scope_refuses_with_role_forbidden(db: Database) -> None:
    caller = caller_for(make_user(db, role="marketer"))
    require_scope(caller, "pricing:write")
    with pytest.raises(Forbidden) as exc:
        require_scope(caller, "orders:write")
    assert exc.value.code == "role_forbidden"
    assert exc.value.status == 403


def test_staff_callers_pass_the_secret_key_check(db: Database) -> None:
    require_secret(caller_for(make_user(db, role="advisor")), "look up carts by code")
    with pytest.raises(Forbidden):
        require_secret(Caller("key_x", "publishable", frozenset()), "look up carts by code")
