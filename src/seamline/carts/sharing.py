"""Who a cart belongs to, and finding carts other than by their id.

- Identity clusters: a customer is every profile with the same ``Profile.cluster_id``; their
  anonymous ids are the cluster's identifiers of kind ``anonymous_id``.
- Share codes (``K7Q-M2P``) are short enough to read aloud — and so short enough to guess.
  Only secret keys (servers, staff tools) may look a cart or a list up by code; publishable
  keys get 403 ``secret_key_required``. The ``crt_…`` id itself (128 bits) is the storefront's
  capability for its own cart.
"""

from __future__ import annotations

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from seamline.auth.service import Caller
from seamline.carts.models import Cart, SavedList
from seamline.db.lookup import not_found, usable_id
from seamline.db.pagination import keyset_page
from seamline.identity.models import Identifier, Profile
from seamline.identity.normalize import email as normalize_email
from seamline.kit.errors import Conflict, FieldError, Forbidden, Unprocessable
from seamline.kit.ids import normalize_read_aloud, read_aloud_code

ANONYMOUS_ID = "anonymous_id"
SHARE_CODE_ATTEMPTS = 8


def require_secret(caller: Caller | None, what: str) -> None:
    """Staff-only operations: a publishable (browser) key may not do ``what``; secret keys and
    signed-in staff users (``kind="staff"``) may."""
    if caller is not None and caller.kind not in ("secret", "staff"):
        raise Forbidden(f"only secret keys may {what}", code="secret_key_required")


def new_share_code(session: Session, model: type[Cart] | type[SavedList]) -> str:
    """A fresh read-aloud code, unused by any cart (or list). 24⁶ ≈ 191 million codes, so a
    clash is rare; the unique index is the last word."""
    for _ in range(SHARE_CODE_ATTEMPTS):
        code = read_aloud_code()
        if not session.scalar(select(exists().where(model.share_code == code))):
            return code
    raise Conflict("could not find a free share code; retry", code="share_code_exhausted")


def canonical_code(code: str) -> str:
    return normalize_read_aloud(code)


# -- identity clusters -----------------------------------------------------------------------


def profile_cluster(session: Session, profile_id: str) -> str:
    """The cluster id of ``profile_id``, or 404 ``profile_not_found``."""
    cluster = None
    if usable_id(profile_id):
        cluster = session.scalar(select(Profile.cluster_id).where(Profile.id == profile_id))
    if cluster is None:
        raise not_found("profile", profile_id, "profile_not_found")
    return cluster


def cluster_profiles(session: Session, cluster_id: str) -> list[str]:
    return list(
        session.scalars(
            select(Profile.id).where(Profile.cluster_id == cluster_id).order_by(Profile.id)
        )
    )


def cluster_anonymous_ids(session: Session, profile_ids: list[str]) -> list[str]:
    if not profile_ids:
        return []
    return list(
        session.scalars(
            select(Identifier.value).where(
                Identifier.kind == ANONYMOUS_ID, Identifier.profile_id.in_(profile_ids)
            )
        )
    )


def profile_of_anonymous_id(session: Session, anonymous_id: str | None) -> str | None:
    """The profile an anonymous id arrived on through the event API, if it ever did."""
    if anonymous_id is None:
        return None
    return session.scalar(
        select(Identifier.profile_id).where(
            Identifier.kind == ANONYMOUS_ID, Identifier.value == anonymous_id
        )
    )


def clusters_by_email(session: Session, email: str) -> list[str]:
    value = normalize_email(email)
    key = value.value if value is not None else email.strip().lower()
    return list(
        session.scalars(
            select(Profile.cluster_id)
            .join(Identifier, Identifier.profile_id == Profile.id)
            .where(Identifier.kind == "email", Identifier.value == key)
            .distinct()
        )
    )


def owned_by_cluster(
    session: Session, model: type[Cart] | type[SavedList], cluster_id: str
) -> ColumnElement[bool]:
    """Carts (or lists) of a customer: their profiles', and those of their anonymous ids
    that no profile owns yet."""
    profiles = cluster_profiles(session, cluster_id)
    anonymous = cluster_anonymous_ids(session, profiles)
    condition: ColumnElement[bool] = model.profile_id.in_(profiles)
    if anonymous:
        condition = or_(condition, model.anonymous_id.in_(anonymous) & model.profile_id.is_(None))
    return condition


# -- finding carts ---------------------------------------------------------------------------


def cart_by_code(session: Session, code: str, *, caller: Caller | None) -> Cart:
    """Staff open a cart by the code the shopper reads to them (secret keys only)."""
    require_secret(caller, "look carts up by share code")
    cart = session.scalars(select(Cart).where(Cart.share_code == canonical_code(code))).first()
    if cart is None:
        raise not_found("cart with code", code, "cart_not_found")
    return cart


def carts_of_customer(
    session: Session,
    *,
    caller: Caller | None,
    profile_id: str | None = None,
    email: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Cart], str | None]:
    """A customer's carts, oldest first: by a profile (its whole identity cluster) or by an
    email (the clusters holding it, and carts that carry it). Secret keys only."""
    require_secret(caller, "list a customer's carts")
    conditions: list[ColumnElement[bool]] = []
    if profile_id is not None:
        conditions.append(owned_by_cluster(session, Cart, profile_cluster(session, profile_id)))
    if email is not None:
        for cluster in clusters_by_email(session, email):
            conditions.append(owned_by_cluster(session, Cart, cluster))
        conditions.append(func.lower(Cart.email) == email.strip().lower())
    if not conditions:
        raise Unprocessable(
            "give profile_id or email",
            errors=[FieldError("query.profile_id", "profile_id or email is required", "missing")],
        )
    stmt = select(Cart).where(or_(*conditions))
    if status is not None:
        stmt = stmt.where(Cart.status == status)
    return keyset_page(session, stmt, Cart.id, after=cursor, limit=limit)
