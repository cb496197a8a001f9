"""Staff users: password hashing, sign-in, lock-out, sessions and their lifetimes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.kit.clock import FrozenClock
from seamline.kit.errors import Conflict, NotFound, Unprocessable
from seamline.staff import service
from seamline.staff.models import StaffSession
from tests.staff.helpers import PASSWORD, current, login, make_location, make_user, user_row

# -- hashing and creation ---------------------------------------------------------------------


def test_password_is_stored_as_argon2_never_in_clear(db: Database) -> None:
    user = make_user(db)
    row = user_row(db, user.id)
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash
    assert PasswordHasher().verify(row.password_hash, PASSWORD)


def test_create_keeps_the_email_as_given_and_matches_it_casefolded(db: Database) -> None:
    user = make_user(db, email="  Ana@Example.com ")
    assert user.id.startswith("usr_")
    assert user.email == "Ana@Example.com"
    assert user.email_key == "ana@example.com"
    assert user.failed_logins == 0
    assert user.location_ids == []
    with db.transaction(readonly=True) as session:
        found = service.find_user_by_email(session, "ANA@example.COM ")
        assert found is not None
        assert found.id == user.id
        assert service.find_user_by_email(session, "bob@example.com") is None


def test_duplicate_email_is_a_conflict(db: Database) -> None:
    make_user(db, email="ana@example.com")
    with pytest.raises(Conflict) as exc:
        make_user(db, email="ANA@example.com")
    assert exc.value.code == "staff_email_taken"


def field_codes(exc: Unprocessable) -> set[tuple[str, str]]:
    return {(e.path, e.code) for e in exc.errors}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"email": "not-an-email"}, ("email", "invalid")),
        ({"email": "a@b"}, ("email", "invalid")),
        ({"email": "x" * 320 + "@example.com"}, ("email", "too_long")),
        ({"name": "   "}, ("name", "required")),
        ({"name": "n" * 201}, ("name", "too_long")),
        ({"role": "owner"}, ("role", "unknown_role")),
        ({"password": "short pass!"}, ("password", "too_short")),
        ({"password": "p" * 1025}, ("password", "too_long")),
        ({"role": "associate"}, ("location_ids", "required")),
        (
            {"role": "associate", "location_ids": ["loc_nope"]},
            ("location_ids.0", "unknown_location"),
        ),
        ({"role": "admin", "location_ids": ["loc_nope"]}, ("location_ids", "not_allowed")),
    ],
)
def test_create_user_validation(
    db: Database, changes: dict[str, object], expected: tuple[str, str]
) -> None:
    args: dict[str, object] = {
        "email": "ana@example.com",
        "name": "Ana",
        "role": "advisor",
        "password": PASSWORD,
        "location_ids": (),
        **changes,
    }
    with pytest.raises(Unprocessable) as exc, db.transaction() as session:
        service.create_user(session, **args)  # type: ignore[arg-type]
    assert exc.value.code == "validation_failed"
    assert field_codes(exc.value) == {expected}
    with db.transaction(readonly=True) as session:
        assert service.list_users(session) == []


def test_create_user_reports_every_bad_field_at_once(db: Database) -> None:
    with pytest.raises(Unprocessable) as exc, db.transaction() as session:
        service.create_user(session, email="nope", name="", role="boss", password="short")
    assert field_codes(exc.value) == {
        ("email", "invalid"),
        ("name", "required"),
        ("role", "unknown_role"),
        ("password", "too_short"),
    }


def test_associate_locations_must_exist(db: Database) -> None:
    soho = make_location(db, "soho")
    with pytest.raises(Unprocessable) as exc:
        make_user(db, role="associate", location_ids=(soho, "loc_missing"))
    assert field_codes(exc.value) == {("location_ids.1", "unknown_location")}
    user = make_user(db, role="associate", location_ids=(soho, soho))
    assert user.location_ids == [soho]


def test_password_of_exactly_twelve_characters_is_enough(db: Database) -> None:
    make_user(db, password="x" * 12)
    assert login(db, password="x" * 12).error is None


# -- sign-in ----------------------------------------------------------------------------------


def test_login_success_opens_a_session(db: Database, clock: FrozenClock) -> None:
    user = make_user(db)
    outcome = login(db, email=" ANA@example.com", user_agent="Mozilla/5.0 " + "x" * 400)
    assert outcome.error is None
    assert outcome.user is not None
    assert outcome.user.id == user.id
    assert outcome.token
    assert outcome.csrf_token
    assert outcome.token != outcome.csrf_token
    assert outcome.locked_until is None
    with db.transaction(readonly=True) as session:
        row = session.scalars(select(StaffSession)).one()
        assert row.id.startswith("ses_")
        assert row.token_hash == service.hash_session_token(outcome.token)
        assert outcome.token not in row.token_hash
        assert row.csrf_token == outcome.csrf_token
        assert row.expires_at == clock.current + timedelta(hours=8)
        assert row.user_agent is not None
        assert len(row.user_agent) == 300
    assert user_row(db, user.id).last_login_at == clock.current
    staff = current(db, outcome.token)
    assert staff is not None
    assert staff.user.id == user.id
    assert staff.csrf_token == outcome.csrf_token
    assert staff.session_id == row.id
    assert staff.caller.kind == "staff"
    assert staff.caller.key_id == user.id


def test_wrong_password_and_unknown_email_look_the_same(db: Database) -> None:
    make_user(db)
    wrong = login(db, password="wrong password!")
    unknown = login(db, email="nobody@example.com")
    for outcome in (wrong, unknown):
        assert outcome == service.LoginOutcome(None, None, None, "invalid_credentials")
    with db.transaction(readonly=True) as session:
        assert session.scalars(select(StaffSession)).all() == []


def test_unknown_email_still_spends_a_verification(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = service._verify

    def spy(password_hash: str, password: str) -> bool:
        calls.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(service, "_verify", spy)
    assert login(db, email="nobody@example.com").error == "invalid_credentials"
    assert len(calls) == 1
    assert calls[0].startswith("$argon2id$")


def test_lockout_after_five_failures_and_unlock_after_fifteen_minutes(
    db: Database, clock: FrozenClock
) -> None:
    user = make_user(db)
    for _ in range(4):
        assert login(db, password="wrong password!").error == "invalid_credentials"
    fifth = login(db, password="wrong password!")
    assert fifth.error == "locked"
    assert fifth.locked_until == clock.current + timedelta(minutes=15)
    # Locked even with the right password, and the lock does not move.
    clock.advance(minutes=14, seconds=59)
    right = login(db)
    assert right.error == "locked"
    assert right.token is None
    assert right.locked_until == fifth.locked_until
    clock.advance(seconds=1)
    ok = login(db)
    assert ok.error is None
    assert ok.token
    row = user_row(db, user.id)
    assert row.failed_logins == 0
    assert row.locked_until is None


def test_after_a_lock_runs_out_there_are_five_fresh_attempts(
    db: Database, clock: FrozenClock
) -> None:
    make_user(db)
    for _ in range(5):
        login(db, password="wrong password!")
    clock.advance(minutes=15)
    for _ in range(4):
        assert login(db, password="wrong password!").error == "invalid_credentials"
    assert login(db, password="wrong password!").error == "locked"


def test_success_resets_the_failure_counter(db: Database) -> None:
    user = make_user(db)
    for _ in range(4):
        login(db, password="wrong password!")
    assert user_row(db, user.id).failed_logins == 4
    assert login(db).error is None
    assert user_row(db, user.id).failed_logins == 0
    for _ in range(4):
        assert login(db, password="wrong password!").error == "invalid_credentials"


def test_disabled_user_cannot_log_in_and_loses_sessions(db: Database) -> None:
    user = make_user(db)
    token = login(db).token
    assert token is not None
    with db.transaction() as session:
        service.disable_user(session, user.id)
        service.disable_user(session, user.id)  # idempotent
    assert login(db).error == "invalid_credentials"
    assert current(db, token) is None
    assert user_row(db, user.id).disabled_at is not None


def test_outdated_hash_is_upgraded_on_login(db: Database) -> None:
    user = make_user(db)
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    with db.transaction() as session:
        row = session.get(service.StaffUser, user.id)
        assert row is not None
        row.password_hash = weak
    assert login(db).error is None
    stored = user_row(db, user.id).password_hash
    assert stored != weak
    assert not PasswordHasher().check_needs_rehash(stored)


def test_set_password_replaces_it_unlocks_and_signs_out(db: Database) -> None:
    user = make_user(db)
    token = login(db).token
    assert token is not None
    for _ in range(5):
        login(db, password="wrong password!")
    with db.transaction() as session:
        service.set_password(session, user.id, "a brand new passphrase")
    assert current(db, token) is None
    assert login(db).error == "invalid_credentials"
    assert login(db, password="a brand new passphrase").error is None


def test_set_password_refusals(db: Database) -> None:
    user = make_user(db)
    with pytest.raises(Unprocessable) as exc, db.transaction() as session:
        service.set_password(session, user.id, "too short")
    assert field_codes(exc.value) == {("password", "too_short")}
    with pytest.raises(NotFound) as missing, db.transaction() as session:
        service.set_password(session, "usr_missing", "long enough password")
    assert missing.value.code == "staff_user_not_found"


def test_list_users_includes_disabled(db: Database) -> None:
    first = make_user(db, email="a@example.com")
    second = make_user(db, email="b@example.com")
    with db.transaction() as session:
        service.disable_user(session, second.id)
    with db.transaction(readonly=True) as session:
        assert [u.id for u in service.list_users(session)] == [first.id, second.id]


# -- sessions ---------------------------------------------------------------------------------


def session_row(db: Database, session_id: str) -> StaffSession:
    with db.transaction(readonly=True) as session:
        row = session.get(StaffSession, session_id)
        assert row is not None
        return row


def test_unknown_or_empty_token_has_no_user(db: Database) -> None:
    assert current(db, "") is None
    assert current(db, "not-a-token") is None


def test_session_expires_after_eight_idle_hours(db: Database, clock: FrozenClock) -> None:
    make_user(db)
    token = login(db).token
    assert token is not None
    clock.advance(hours=5)
    assert current(db, token) is not None  # slides the idle timeout
    clock.advance(hours=5)  # 10 hours after sign-in, 5 idle
    assert current(db, token) is not None
    clock.advance(hours=1, minutes=59)
    assert current(db, token) is not None  # 11:59 after sign-in
    second = login(db).token
    assert second is not None
    clock.advance(hours=2)  # touch the new session, then leave it idle
    assert current(db, second) is not None
    clock.advance(hours=8)  # 10 hours after its sign-in, but 8 idle
    assert current(db, second) is None


def test_idle_expiry_without_activity(db: Database, clock: FrozenClock) -> None:
    make_user(db)
    token = login(db).token
    assert token is not None
    clock.advance(hours=8)
    assert current(db, token) is None


def test_session_ends_twelve_hours_after_sign_in(db: Database, clock: FrozenClock) -> None:
    make_user(db)
    token = login(db).token
    assert token is not None
    start = clock.current
    for _ in range(11):
        clock.advance(hours=1)
        staff = current(db, token)
        assert staff is not None
    # The idle deadline never passes the absolute one.
    assert session_row(db, staff.session_id).expires_at == start + timedelta(hours=12)
    clock.advance(minutes=59, seconds=59)
    assert current(db, token) is not None
    clock.advance(seconds=1)
    assert current(db, token) is None


def test_sliding_writes_at_most_once_a_minute(db: Database, clock: FrozenClock) -> None:
    make_user(db)
    token = login(db).token
    assert token is not None
    start = clock.current
    clock.advance(seconds=59)
    staff = current(db, token)
    assert staff is not None
    row = session_row(db, staff.session_id)
    assert row.last_seen_at == start
    assert row.expires_at == start + timedelta(hours=8)
    clock.advance(seconds=1)
    assert current(db, token) is not None
    row = session_row(db, staff.session_id)
    assert row.last_seen_at == clock.current
    assert row.expires_at == clock.current + timedelta(hours=8)


def test_logout_revokes_the_session(db: Database) -> None:
    make_user(db)
    first, second = login(db).token, login(db).token
    assert first
    assert second
    with db.transaction() as session:
        service.logout(session, first)
        service.logout(session, first)  # twice is fine
        service.logout(session, "unknown-token")
    assert current(db, first) is None
    assert current(db, second) is not None


def test_housekeeping_deletes_sessions_a_day_after_they_ended(
    db: Database, clock: FrozenClock
) -> None:
    """Expired and revoked sessions are deleted a day after they ended; live ones stay, and
    the runtime's worker runs the chore."""
    from seamline.runtime import build_runtime
    from seamline.settings import Settings

    make_user(db)
    make_user(db, email="bo@example.com")
    signed_out = login(db)
    assert signed_out.token
    with db.transaction() as session:
        service.logout(session, signed_out.token)
    clock.advance(hours=9)  # the first session is revoked; this one will idle out at +17 h
    idle = login(db, email="bo@example.com")
    assert service.purge_ended_sessions(db) == 0  # revoked 9 hours ago: kept for now
    clock.advance(hours=16)
    live = login(db)
    assert live.token
    assert idle.token
    assert service.purge_ended_sessions(db) == 1  # the revoked one, 25 hours on
    clock.advance(hours=8, minutes=1)  # `idle` ended 16 h ago (8 h idle after its sign-in)
    assert current(db, live.token) is None  # and `live` a minute ago
    assert service.purge_ended_sessions(db) == 0
    clock.advance(hours=24)
    runtime = build_runtime(Settings(database_url=db.engine.url.render_as_string(False)))
    try:
        worker = runtime.worker()
        assert service.purge_ended_sessions in worker.housekeeping
        assert worker.keep_house() >= 2
    finally:
        runtime.close()
    with db.transaction(readonly=True) as session:
        assert session.scalars(select(StaffSession)).all() == []
