"""Shared set-up for the staff tests."""

from __future__ import annotations

from seamline.db.engine import Database
from seamline.inventory.models import Location
from seamline.kit.ids import new_id
from seamline.staff import service
from seamline.staff.models import StaffUser

PASSWORD = "correct horse battery"


def make_location(db: Database, handle: str = "soho") -> str:
    with db.transaction() as session:
        location = Location(
            id=new_id("loc"),
            kind="store",
            name=handle.title(),
            handle=handle,
            country="GB",
            time_zone="Europe/London",
        )
        session.add(location)
        session.flush()
        return location.id


def make_user(
    db: Database,
    *,
    email: str = "Ana@Example.com",
    role: str = "advisor",
    password: str = PASSWORD,
    location_ids: tuple[str, ...] = (),
) -> StaffUser:
    with db.transaction() as session:
        return service.create_user(
            session,
            email=email,
            name="Ana Silva",
            role=role,
            password=password,
            location_ids=location_ids,
        )


def login(
    db: Database,
    email: str = "ana@example.com",
    password: str = PASSWORD,
    user_agent: str | None = None,
) -> service.LoginOutcome:
    with db.transaction() as session:
        return service.login(session, email=email, password=password, user_agent=user_agent)


def current(db: Database, token: str) -> service.StaffLogin | None:
    with db.transaction() as session:
        return service.session_user(session, token)


def user_row(db: Database, user_id: str) -> StaffUser:
    with db.transaction(readonly=True) as session:
        user = session.get(StaffUser, user_id)
        assert user is not None
        return user
