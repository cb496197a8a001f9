"""Identifier kinds and their normalisation: one matching key per real-world identifier.

A value that does not normalise (a malformed email, a phone number that is not a number) is
kept as its trimmed raw text with ``valid = False``: the event is never dropped for it, and an
invalid identifier never links profiles (see rules.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

from seamline.identity.models import ID_VALUE_MAX

USER_ID = "user_id"
ANONYMOUS_ID = "anonymous_id"
EMAIL = "email"
PHONE = "phone"
LOYALTY_CARD = "loyalty_card"
DEVICE_ID = "device_id"
SOCIAL = "social"  # kinds are ``social:<network>``
EXTERNAL = "external"  # kinds are ``external:<source system>``

# The traits that carry a social handle, by network. (`x` is left out: as a trait name it is
# far more often something else than a handle.)
SOCIAL_NETWORKS = ("instagram", "tiktok", "facebook", "twitter", "whatsapp", "youtube")
# Values that name nobody: kept, marked invalid, so they never link two people.
PLACEHOLDERS = frozenset(
    {"", "0", "-", "n/a", "na", "none", "null", "nil", "undefined", "unknown", "yes", "no"}
    | {"true", "false", "00000000-0000-0000-0000-000000000000", "0000000000000000"}
)

# Deliberately simple: one @, a non-empty local part without spaces, a dotted domain of
# letters, digits and hyphens. Full RFC 5322 accepts addresses no mailbox provider issues.
_EMAIL = re.compile(
    r"^[^@\s\"(),:;<>\[\]\\]{1,64}@(?=.{1,253}$)"
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)
_HANDLE = re.compile(r"^[a-z0-9._-]{1,64}$")
_SYSTEM = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_REGION = re.compile(r"^[A-Za-z]{2}$")


@dataclass(frozen=True, order=True)
class IdentifierValue:
    """A normalised identifier as it arrived: ``value`` is the matching key, ``raw`` the input."""

    kind: str
    value: str
    raw: str
    valid: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.value)


def _text(raw: object) -> str | None:
    """A scalar as text; ``None`` for what cannot be an identifier (objects, lists, empty)."""
    if isinstance(raw, bool) or raw is None or isinstance(raw, dict | list):
        return None
    text = str(raw).strip()
    return text or None


def _fits(value: IdentifierValue | None) -> IdentifierValue | None:
    # A value wider than the column cannot be matched anyway; the trait still keeps it.
    if value is None or len(value.value) > ID_VALUE_MAX:
        return None
    return value


def opaque(kind: str, raw: object) -> IdentifierValue | None:
    """An id issued by a system (user id, anonymous id, device id): exact, as Segment keeps it."""
    if _text(raw) is None:
        return None
    text = str(raw)
    return _fits(IdentifierValue(kind, text, text, True))


def email(raw: object) -> IdentifierValue | None:
    """Lower-cased and trimmed; valid when it looks like a deliverable address."""
    text = _text(raw)
    if text is None:
        return None
    value = text.lower()
    return _fits(IdentifierValue(EMAIL, value, str(raw), bool(_EMAIL.match(value))))


def phone(raw: object, *, region: str | None) -> IdentifierValue | None:
    """E.164 through ``phonenumbers``; ``region`` (ISO 3166 alpha-2) reads national numbers."""
    text = _text(raw)
    if text is None:
        return None
    try:
        parsed = phonenumbers.parse(text, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and phonenumbers.is_valid_number(parsed):
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        return _fits(IdentifierValue(PHONE, e164, str(raw), True))
    return _fits(IdentifierValue(PHONE, text, str(raw), False))


def loyalty_card(raw: object) -> IdentifierValue | None:
    """Upper-cased, without the spaces and dashes people type between groups."""
    text = _text(raw)
    if text is None:
        return None
    value = re.sub(r"[\s-]", "", text).upper()
    return _fits(IdentifierValue(LOYALTY_CARD, value, str(raw), value.isalnum()))


def social_handle(network: str, raw: object) -> IdentifierValue | None:
    """``social:<network>``: trimmed, lower-cased, without a leading ``@``."""
    text = _text(raw)
    if text is None:
        return None
    value = text.lower().removeprefix("@")
    kind = f"{SOCIAL}:{network.lower()}"
    valid = bool(_HANDLE.match(value)) and value not in PLACEHOLDERS
    return _fits(IdentifierValue(kind, value, str(raw), valid))


def external_id(system: object, raw: object) -> IdentifierValue | None:
    """``external:<system>`` (a CRM, a marketplace, a POS): trimmed, case kept."""
    name = _text(system)
    text = _text(raw)
    if name is None or text is None or not _SYSTEM.match(name.lower()):
        return None
    return _fits(IdentifierValue(f"{EXTERNAL}:{name.lower()}", text, str(raw), True))


def region_of(context: dict[str, object], traits: dict[str, object]) -> str | None:
    """The country to read national phone numbers in: the event's location, the person's
    address, then the locale's region (``en-GB`` → ``GB``)."""
    location = context.get("location")
    candidates: list[object] = []
    if isinstance(location, dict):
        candidates.append(location.get("country"))
    address = traits.get("address")
    if isinstance(address, dict):
        candidates.append(address.get("country"))
    locale = context.get("locale")
    if isinstance(locale, str) and ("-" in locale or "_" in locale):
        candidates.append(re.split(r"[-_]", locale)[-1])
    for candidate in candidates:
        if isinstance(candidate, str) and _REGION.match(candidate):
            return candidate.upper()
    return None


def from_traits(traits: dict[str, object], *, region: str | None) -> list[IdentifierValue]:
    """The identifiers a person's traits carry: email, phone, loyalty card, social handles."""
    found = [
        email(traits.get("email")),
        phone(traits.get("phone"), region=region),
        loyalty_card(traits.get("loyalty_card", traits.get("loyaltyCard"))),
    ]
    found += [social_handle(n, traits.get(n)) for n in SOCIAL_NETWORKS]
    return [v for v in found if v is not None]


def from_context(context: dict[str, object]) -> list[IdentifierValue]:
    """Identifiers in a call's context: ``device.id`` and Segment's ``externalIds``."""
    found: list[IdentifierValue | None] = []
    device = context.get("device")
    if isinstance(device, dict):
        # A placeholder device id (all zeros when tracking is limited) is kept but never links.
        device_id = opaque(DEVICE_ID, device.get("id"))
        if device_id is not None and device_id.value.strip().lower() in PLACEHOLDERS:
            device_id = IdentifierValue(DEVICE_ID, device_id.value, device_id.raw, False)
        found.append(device_id)
    externals = context.get("externalIds")
    if isinstance(externals, list):
        for entry in externals[:20]:
            if isinstance(entry, dict):
                found.append(external_id(entry.get("type"), entry.get("id")))
    return [v for v in found if v is not None]
