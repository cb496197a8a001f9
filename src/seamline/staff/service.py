"""Staff users, password sign-in with lock-out, and console sessions.

- Passwords are hashed with argon2id (``argon2.PasswordHasher``) and never logged.
- ``login`` never raises for bad credentials: it returns a ``LoginOutcome`` so the caller's
  transaction commits the failure counter. An unknown email, a wrong password and a disabled
  account all give ``invalid_credentials``, and each spends one argon2 verification.
- Five failures in a row lock the account for 15 minutes (``locked``, even with the right
  password); a success resets the counter.
- A session is a random cookie token stored as its SHA-256 hash. It ends after 8 hours idle
  (sliding, moved at most once a minute) and 12 hours after sign-in at the latest.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.db.engine import Database
from seamline.inventory.models import Location
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, NotFound, Unprocessable
from seamline.kit.ids import new_id
from seamline.staff.models import USER_AGENT_MAX_LENGTH, StaffSession, StaffUser
from seamline.staff.roles import LOCATION_BOUND_ROLES, ROLES, caller_for

log = structlog.get_logger("seamline.staff")

PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 1024  # long enough for any pass phrase, short enough to refuse junk
EMAIL_MAX_LENGTH = 320
NAME_MAX_LENGTH = 200
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_IDLE = timedelta(hours=8)
SESSION_ABSOLUTE = timedelta(hours=12)
SESSION_TOUCH_PRECISION = timedelta(seconds=60)

INVALID_CREDENTIALS = "invalid_credentials"
LOCKED = "locked"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class LoginOutcome:
    user: StaffUser | None
    token: str | None  # the session cookie value, shown once
    csrf_token: str | None
    error: str | None  # None | "invalid_credentials" | "locked"
    locked_until: datetime | None = None


@dataclass(frozen=True)
class StaffLogin:
    user: StaffUser
    caller: Caller
    csrf_token: str
    session_id: str


def email_key(email: str) -> str:
    """What logins match on and what is unique: the address stripped and casefolded."""
    return email.strip().casefold()


def hash_session_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@functools.cache
def _dummy_hash() -> str:
    """A hash of nothing anyone knows, verified when there is no user so timing matches."""
    return _hasher.hash(secrets.token_urlsafe(32))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _password_errors(password: str, path: str = "password") -> list[FieldError]:
    if len(password) < PASSWORD_MIN_LENGTH:
        return [FieldError(path, f"at least {PASSWORD_MIN_LENGTH} characters", "too_short")]
    if len(password) > PASSWORD_MAX_LENGTH:
        return [FieldError(path, f"at most {PASSWORD_MAX_LENGTH} characters", "too_long")]
    return []


# -- users ------------------------------------------------------------------------------------


def create_user(
    session: Session,
    *,
    email: str,
    name: str,
    role: str,
    password: str,
    location_ids: Sequence[str] = (),
) -> StaffUser:
    """Create a staff user; every invalid field is reported at once (422 with field paths)."""
    errors: list[FieldError] = []
    email = email.strip()
    if len(email) > EMAIL_MAX_LENGTH:
        errors.append(FieldError("email", f"at most {EMAIL_MAX_LENGTH} characters", "too_long"))
    elif not _EMAIL.match(email):
        errors.append(FieldError("email", "an email address such as ana@example.com", "invalid"))
    name = name.strip()
    if not name:
        errors.append(FieldError("name", "a name is required", "required"))
    elif len(name) > NAME_MAX_LENGTH:
        errors.append(FieldError("name", f"at most {NAME_MAX_LENGTH} characters", "too_long"))
    if role not in ROLES:
        errors.append(FieldError("role", f"one of {', '.join(ROLES)}", "unknown_role"))
    errors.extend(_password_errors(password))
    locations = list(dict.fromkeys(loc.strip() for loc in location_ids))
    if role in LOCATION_BOUND_ROLES:
        if not locations:
            errors.append(
                FieldError("location_ids", "a store associate needs a location", "required")
            )
        else:
            known = set(session.scalars(select(Location.id).where(Location.id.in_(locations))))
            errors.extend(
                FieldError(f"location_ids.{i}", f"no location {loc}", "unknown_location")
                for i, loc in enumerate(locations)
                if loc not in known
            )
    elif locations and role in ROLES:
        errors.append(
            FieldError(
                "location_ids", "only store associates are bound to locations", "not_allowed"
            )
        )
    if errors:
        raise Unprocessable("the staff user is not valid", errors=errors)

    key = email_key(email)
    if find_user_by_email(session, key) is not None:
        raise Conflict(f"a staff user with email {email} exists", code="staff_email_taken")
    user = StaffUser(
        id=new_id("usr"),
        email=email,
        email_key=key,
        name=name,
        role=role,
        location_ids=sorted(locations),
        password_hash=_hasher.hash(password),
        failed_logins=0,
        created_at=clock.now(),
    )
    try:
        with session.begin_nested():  # a concurrent create of the same email loses cleanly
            session.add(user)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a staff user with email {email} exists", code="staff_email_taken") from exc
    return user


def find_user_by_email(session: Session, email: str) -> StaffUser | None:
    return session.scalars(
        select(StaffUser).where(StaffUser.email_key == email_key(email))
    ).one_or_none()


def list_users(session: Session) -> list[StaffUser]:
    """Every staff user, disabled ones included, oldest first."""
    return list(session.scalars(select(StaffUser).order_by(StaffUser.created_at, StaffUser.id)))


def _get_user(session: Session, user_id: str) -> StaffUser:
    user = session.get(StaffUser, user_id)
    if user is None:
        raise NotFound(f"no staff user {user_id}", code="staff_user_not_found")
    return user


def _revoke_sessions(session: Session, user_id: str) -> None:
    session.execute(
        update(StaffSession)
        .where(StaffSession.user_id == user_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
        .execution_options(synchronize_session=False)
    )


def set_password(session: Session, user_id: str, password: str) -> None:
    """Replace the password, lift any lock-out and sign the user out everywhere."""
    errors = _password_errors(password)
    if errors:
        raise Unprocessable("the password is not valid", errors=errors)
    user = _get_user(session, user_id)
    user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    _revoke_sessions(session, user.id)


def disable_user(session: Session, user_id: str) -> None:
    """Stop the user signing in and end their sessions at once (idempotent)."""
    user = _get_user(session, user_id)
    if user.disabled_at is None:
        user.disabled_at = clock.now()
    _revoke_sessions(session, user.id)


# -- sign-in and sessions ---------------------------------------------------------------------


def _refused(error: str, locked_until: datetime | None = None) -> LoginOutcome:
    return LoginOutcome(None, None, None, error, locked_until)


def login(
    session: Session, *, email: str, password: str, user_agent: str | None = None
) -> LoginOutcome:
    """Check a password and open a session. Never raises for bad credentials."""
    now = clock.now()
    # No account's email holds a NUL (create_user refuses it), and PostgreSQL cannot even
    # compare such text: it is simply not an account.
    key = email_key(email)
    # Row lock on PostgreSQL so concurrent failures all count (SQLite writers are serial).
    user = (
        None
        if "\x00" in key
        else session.scalars(
            select(StaffUser).where(StaffUser.email_key == key).with_for_update()
        ).one_or_none()
    )
    if user is None or user.disabled_at is not None:
        _verify(_dummy_hash(), password)  # the same work as a real check
        return _refused(INVALID_CREDENTIALS)
    if user.locked_until is not None:
        if user.locked_until > now:
            return _refused(LOCKED, user.locked_until)
        user.locked_until = None  # the lock ran out: a fresh set of attempts
        user.failed_logins = 0
    if not _verify(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCKOUT
            log.warning("staff.locked_out", user_id=user.id, until=user.locked_until.isoformat())
            return _refused(LOCKED, user.locked_until)
        return _refused(INVALID_CREDENTIALS)

    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.last_login_at = now
    token = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    session.add(
        StaffSession(
            id=new_id("ses"),
            token_hash=hash_session_token(token),
            user_id=user.id,
            csrf_token=csrf_token,
            created_at=now,
            last_seen_at=now,
            expires_at=min(now + SESSION_IDLE, now + SESSION_ABSOLUTE),
            user_agent=user_agent[:USER_AGENT_MAX_LENGTH] if user_agent else None,
        )
    )
    session.flush()
    return LoginOutcome(user, token, csrf_token, None)


def session_user(session: Session, token: str) -> StaffLogin | None:
    """The signed-in user behind a session cookie, or ``None`` (unknown, revoked, expired,
    disabled). Slides the idle timeout forward, writing at most once a minute."""
    if not token:
        return None
    digest = hash_session_token(token)
    row = session.execute(
        select(StaffSession, StaffUser)
        .join(StaffUser, StaffUser.id == StaffSession.user_id)
        .where(StaffSession.token_hash == digest)
    ).one_or_none()
    if row is None:
        return None
    staff_session, user = row
    now = clock.now()
    if (
        not hmac.compare_digest(staff_session.token_hash, digest)
        or staff_session.revoked_at is not None
        or staff_session.expires_at <= now
        or staff_session.created_at + SESSION_ABSOLUTE <= now
        or user.disabled_at is not None
    ):
        return None
    if now - staff_session.last_seen_at >= SESSION_TOUCH_PRECISION:
        staff_session.last_seen_at = now
        staff_session.expires_at = min(
            now + SESSION_IDLE, staff_session.created_at + SESSION_ABSOLUTE
        )
    return StaffLogin(user, caller_for(user), staff_session.csrf_token, staff_session.id)


# Ended sessions (expired or revoked) are kept this long, then deleted by the worker's
# housekeeping: long enough to see recent sign-ins, short enough not to pile up.
ENDED_SESSIONS_KEPT = timedelta(days=1)


def purge_ended_sessions(db: Database) -> int:
    """Delete sessions that ended (expired or revoked) more than ``ENDED_SESSIONS_KEPT`` ago;
    a worker housekeeping chore. Returns how many were deleted."""
    before = clock.now() - ENDED_SESSIONS_KEPT
    with db.transaction() as session:
        result = session.execute(
            delete(StaffSession).where(
                or_(StaffSession.expires_at < before, StaffSession.revoked_at < before)
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


def logout(session: Session, token: str) -> None:
    """Revoke the session behind ``token``; unknown or already revoked tokens are ignored."""
    if not token:
        return
    staff_session = session.scalars(
        select(StaffSession).where(StaffSession.token_hash == hash_session_token(token))
    ).one_or_none()
    if staff_session is not None and staff_session.revoked_at is None:
        staff_session.revoked_at = clock.now()
