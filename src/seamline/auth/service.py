"""Creating, listing, revoking and authenticating API keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from seamline.auth.models import ApiKey
from seamline.auth.scopes import KEY_KINDS, SCOPES, allowed_scopes
from seamline.kit import clock
from seamline.kit.errors import FieldError, Forbidden, NotFound, Unauthenticated, Unprocessable
from seamline.kit.ids import new_id, new_secret

LAST_USED_PRECISION = timedelta(seconds=60)
NAME_MAX_LENGTH = 200  # the width of ApiKey.name


@dataclass(frozen=True)
class Caller:
    """Who is calling: resolved once per request, checked by every service that scopes data."""

    key_id: str
    kind: str
    scopes: frozenset[str]
    location_ids: tuple[str, ...] = field(default=())
    touch_due: bool = field(default=False, compare=False)  # last-used time is over a minute old

    def may_act_at(self, location_id: str | None) -> bool:
        """A key limited to locations acts only on objects of those locations (it reads all)."""
        return not self.location_ids or location_id in self.location_ids

    def require_location(self, location_id: str | None) -> None:
        if not self.may_act_at(location_id):
            raise Forbidden(
                "this key may only act at its own locations",
                code="location_out_of_scope",
            )


def token_from_authorization(value: str) -> str | None:
    """The key in an ``Authorization`` header: ``Bearer <key>``, or HTTP Basic with the key as
    the user name (what Segment-style clients send). ``None`` when there is none."""
    scheme, _, credentials = value.partition(" ")
    credentials = credentials.strip()
    if not credentials:
        return None
    if scheme.lower() == "bearer":
        return credentials
    if scheme.lower() == "basic":
        try:
            username = base64.b64decode(credentials, validate=True).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            return None
        return username or None
    return None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(
    session: Session,
    *,
    kind: str,
    name: str,
    scopes: list[str] | None = None,
    location_ids: list[str] | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its token, which is never retrievable again."""
    if kind not in KEY_KINDS:
        raise Unprocessable(
            f"unknown key kind {kind!r}",
            errors=[FieldError("kind", f"one of {', '.join(KEY_KINDS)}", "unknown_kind")],
        )
    name = name.strip() or kind
    if len(name) > NAME_MAX_LENGTH:
        raise Unprocessable(
            f"the key name is longer than {NAME_MAX_LENGTH} characters",
            errors=[FieldError("name", f"at most {NAME_MAX_LENGTH} characters", "too_long")],
        )
    permitted = allowed_scopes(kind)
    # No scopes given means everything the kind allows; an explicit empty list is a mistake,
    # never a silent grant of every scope.
    if scopes is not None and not scopes:
        raise Unprocessable(
            "a key needs at least one scope",
            errors=[FieldError("scopes", "at least one scope", "empty")],
        )
    wanted = sorted(set(scopes)) if scopes is not None else sorted(permitted)
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise Unprocessable(
            f"unknown scopes: {', '.join(unknown)}",
            errors=[FieldError("scopes", f"unknown scope {s}", "unknown_scope") for s in unknown],
        )
    too_wide = [s for s in wanted if s not in permitted]
    if too_wide:
        raise Unprocessable(
            f"{kind} keys cannot hold: {', '.join(too_wide)}",
            errors=[
                FieldError("scopes", f"{s} not allowed", "scope_not_allowed") for s in too_wide
            ],
        )
    token = new_secret(KEY_KINDS[kind], 24)
    key = ApiKey(
        id=new_id("key"),
        kind=kind,
        name=name,
        token_prefix=token[:10],
        token_hash=hash_token(token),
        scopes=wanted,
        location_ids=sorted(set(location_ids or [])),
        created_at=clock.now(),
    )
    session.add(key)
    session.flush()
    return key, token


def replace_named_key(session: Session, *, name: str, kind: str = "secret") -> tuple[ApiKey, str]:
    """Revoke every live key called ``name`` and create a fresh one (for scripts and demos)."""
    for old in list_keys(session):
        if old.name == name:
            revoke_key(session, old.id)
    return create_key(session, kind=kind, name=name)


def list_keys(session: Session, *, include_revoked: bool = False) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(stmt))


def revoke_key(session: Session, key_id: str) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id}", code="api_key_not_found")
    if key.revoked_at is None:
        key.revoked_at = clock.now()
    return key


def authenticate(session: Session, token: str) -> Caller:
    """Resolve a bearer token to a caller; revoked or unknown tokens are refused alike."""
    digest = hash_token(token)
    key = session.scalars(select(ApiKey).where(ApiKey.token_hash == digest)).one_or_none()
    # The lookup is by hash; compare again in constant time so timing reveals nothing.
    if key is None or not hmac.compare_digest(key.token_hash, digest) or key.revoked_at:
        raise Unauthenticated(
            "the API key is missing, unknown or revoked",
            code="invalid_api_key",
            headers={"WWW-Authenticate": 'Bearer realm="seamline", error="invalid_token"'},
        )
    stale = key.last_used_at is None or key.last_used_at < clock.now() - LAST_USED_PRECISION
    # The kind caps the scopes at use too, not only at creation: a publishable key stays a
    # storefront key even if its row was widened or the catalogue of kinds changed since.
    scopes = frozenset(key.scopes) & allowed_scopes(key.kind)
    return Caller(key.id, key.kind, scopes, tuple(key.location_ids), stale)


def touch_last_used(session: Session, key_id: str) -> None:
    """Record use at most once a minute per key, so reads do not turn into writes."""
    now = clock.now()
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where((ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < now - LAST_USED_PRECISION))
        .values(last_used_at=now)
    )
