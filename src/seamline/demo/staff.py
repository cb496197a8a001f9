"""The demo's staff logins: one per role, with fixed demo passwords (printed at the end).

Built on ``seamline.staff.service`` (``create_user`` / ``find_user_by_email``); an existing user
is reused as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from seamline.staff import service as staff_service

EMAIL_DOMAIN = "kettleandkin.example"


@dataclass(frozen=True)
class Login:
    role: str
    name: str
    email: str
    password: str
    where: str = ""


LOGINS = [
    Login("admin", "Ada Admin", f"admin@{EMAIL_DOMAIN}", "kettle-admin-2024"),
    Login("associate", "Sam Rivera", f"sam.soho@{EMAIL_DOMAIN}", "kettle-soho-2024", "soho"),
    Login("advisor", "Priya Advisor", f"advisor@{EMAIL_DOMAIN}", "kettle-advisor-2024"),
    Login("marketer", "Mo Marketer", f"marketer@{EMAIL_DOMAIN}", "kettle-marketer-2024"),
]


def ensure_logins(session: Session, location_ids: dict[str, str]) -> list[Login]:
    """Create the demo staff users that do not exist yet; returns the logins that work."""
    ready = []
    for login in LOGINS:
        if staff_service.find_user_by_email(session, login.email) is None:
            where = [location_ids[login.where]] if login.where else []
            staff_service.create_user(
                session,
                email=login.email,
                name=login.name,
                role=login.role,
                password=login.password,
                location_ids=where,
            )
        ready.append(login)
    return ready
