"""Erased identifiers stay erased: a keyed hash of each, and the check every tracking call
passes through (docs/privacy.md, "Late events").

Only ``HMAC-SHA256(key, kind + value)`` is stored, with a key derived from
``SEAMLINE_SECRET_KEY`` that the runtime hands to every session (``configure``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

import structlog
from prometheus_client import Counter
from sqlalchemy import delete, exists, select, tuple_
from sqlalchemy.orm import Session

from seamline.db.engine import Database
from seamline.identity.customer_models import ErasedIdentifier
from seamline.identity.normalize import ANONYMOUS_ID, DEVICE_ID, IdentifierValue

log = structlog.get_logger("seamline.privacy")

# Where the runtime puts the key of the identifier hashes (see ``configure``).
HASH_KEY_INFO = "seamline.privacy_hash_key"
# Identifiers of a device rather than a person: shared, so they only suppress the calls that
# would land on them.
DEVICE_KINDS = frozenset({ANONYMOUS_ID, DEVICE_ID})
_CHUNK = 500

SUPPRESSED_CALLS = Counter(
    "seamline_privacy_suppressed_calls_total",
    "Tracking calls dropped because they carry an erased identifier",
)


def derive_key(secret_key: str) -> bytes:
    """The HMAC key of erased-identifier hashes, derived from ``SEAMLINE_SECRET_KEY``.

    Keyed, so a copy of the database alone cannot test guessed emails against the hashes.
    Changing the secret key makes earlier hashes unmatchable (the suppression is lost), as it
    makes webhook secrets unreadable: rotate it with both in mind.
    """
    return hmac.new(secret_key.encode(), b"seamline:erased-identifiers:v1", hashlib.sha256).digest()


def configure(db: Database, secret_key: str) -> None:
    """Give every session of ``db`` the hash key (called once by ``build_runtime``)."""
    info = dict(db.sessions.kw.get("info") or {})
    info[HASH_KEY_INFO] = derive_key(secret_key)
    db.sessions.configure(info=info)


def _key(session: Session) -> bytes | None:
    key = session.info.get(HASH_KEY_INFO)
    return key if isinstance(key, bytes) else None


def require_key(session: Session) -> bytes:
    key = _key(session)
    if key is None:
        raise RuntimeError("privacy.configure() was not called for this database")
    return key


def identifier_hash(key: bytes, kind: str, value: str) -> str:
    """HMAC-SHA256 of the normalised identifier (kinds never contain a newline)."""
    message = f"{kind}\n{value}".encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _checked(values: Iterable[IdentifierValue], primary: IdentifierValue) -> set[tuple[str, str]]:
    """The identifiers of a call whose erasure suppresses it (see ``suppressed``)."""
    keys = {v.key for v in values if v.valid and v.kind not in DEVICE_KINDS}
    if primary.valid:
        keys.add(primary.key)
    return keys


def suppressed(
    session: Session, identifiers: Iterable[IdentifierValue], primary: IdentifierValue
) -> bool:
    """Whether a tracking call must be dropped because it would recreate an erased person.

    It is when it carries an erased identifier of the person's own kinds (user id, email,
    phone, loyalty card, social handle, external id), or when the profile it would land on —
    its ``primary`` identifier — was erased. An erased *device* identifier (anonymous id,
    device id) elsewhere in a call does not drop it: devices are shared (a kiosk, a family
    tablet) and the next person's calls must still be stored.

    Called by ingestion for every call (one primary-key lookup, only valid identifiers: an
    invalid one is never hashed). A dropped call is still acknowledged; the drop is counted
    (``seamline_privacy_suppressed_calls_total``) and logged with the identifier's kind only.
    """
    return suppressed_calls(session, [(primary, identifiers)])[0]


def suppressed_calls(
    session: Session, calls: Sequence[tuple[IdentifierValue, Iterable[IdentifierValue]]]
) -> list[bool]:
    """``suppressed`` for many calls (``(primary, identifiers)`` each) in one lookup per 500
    identifiers, for batch ingestion."""
    wanted = [_checked(values, primary) for primary, values in calls]
    every = sorted(set().union(*wanted)) if wanted else []
    if not every:
        return [False] * len(calls)
    key = _key(session)
    if key is None:
        # A process built without the runtime: fail closed only if anything was ever erased.
        if session.scalar(select(exists().select_from(ErasedIdentifier))):
            raise RuntimeError("privacy.configure() was not called for this database")
        return [False] * len(calls)
    digests = {k: (k[0], identifier_hash(key, *k)) for k in every}
    erased: set[tuple[str, str]] = set()
    hashes = sorted(digests.values())
    for start in range(0, len(hashes), _CHUNK):
        rows = session.execute(
            select(ErasedIdentifier.kind, ErasedIdentifier.value_hash).where(
                tuple_(ErasedIdentifier.kind, ErasedIdentifier.value_hash).in_(
                    hashes[start : start + _CHUNK]
                )
            )
        )
        erased.update((kind, digest) for kind, digest in rows)
    verdicts: list[bool] = []
    for keys in wanted:
        hits = sorted(k[0] for k in keys if digests[k] in erased)
        if hits:
            SUPPRESSED_CALLS.inc()
            log.info("tracking_call_suppressed", erased_kind=hits[0])
        verdicts.append(bool(hits))
    return verdicts


def erased_request(session: Session, value: IdentifierValue) -> str | None:
    """The erasure request that erased this identifier, if it is still suppressed."""
    digest = identifier_hash(require_key(session), value.kind, value.value)
    return session.scalar(
        select(ErasedIdentifier.request_id).where(
            ErasedIdentifier.kind == value.kind, ErasedIdentifier.value_hash == digest
        )
    )


def lift_suppression(session: Session, value: IdentifierValue) -> bool:
    """Let this identifier be recorded again (the person granted consent anew)."""
    digest = identifier_hash(require_key(session), value.kind, value.value)
    result = session.execute(
        delete(ErasedIdentifier).where(
            ErasedIdentifier.kind == value.kind, ErasedIdentifier.value_hash == digest
        )
    )
    return bool(getattr(result, "rowcount", 0))
