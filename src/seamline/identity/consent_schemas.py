"""Consent API shapes (consent_api.py). Inputs are strict: unknown fields are refused.

Every rule the server enforces on one change is also written into the JSON Schema (a grant
needs a level, a denial has none), so the OpenAPI document says exactly what is valid.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from seamline.identity.customer_models import CONSENT_LEVELS
from seamline.kit.schemas import NAME_PATTERN, Attributes, check_attributes

Channel = Literal["email", "sms", "push", "whatsapp", "phone"]
Purpose = Literal["marketing", "transactional"]
State = Literal["granted", "denied"]
Level = Literal["single", "confirmed"]
IdentifierKind = Literal["email", "phone", "user_id", "loyalty_card"]
# What a recorded change did to the cluster's consent (docs/privacy.md, "Recording").
Outcome = Literal["changed", "reconfirmed", "superseded"]

MAX_CHANGES = 20
MAX_EVIDENCE_BYTES = 4096

# A grant names how it was obtained; a denial has no level.
_LEVEL_RULE: JsonDict = {
    "anyOf": [
        {
            "properties": {"state": {"const": "granted"}, "level": {"enum": list(CONSENT_LEVELS)}},
            "required": ["state", "level"],
        },
        {"properties": {"state": {"const": "denied"}, "level": {"type": "null"}}},
    ]
}


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_range", "out of the representable range") from None


class ConsentChangeIn(BaseModel):
    """One change of consent for one channel and purpose."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra=_LEVEL_RULE
    )

    channel: Channel
    purpose: Purpose
    state: State
    level: Level | None = Field(
        default=None,
        validate_default=True,
        description="Required with `granted`: `single` opt-in or `confirmed` (double) opt-in; "
        "absent or null with `denied`.",
    )
    source: str = Field(
        min_length=1,
        max_length=80,
        pattern=NAME_PATTERN,
        description="Where it was given or withdrawn: `checkout`, `newsletter-form`, `store`, "
        "`unsubscribe-link` … Not for personal data.",
    )
    effective_at: datetime | None = Field(
        default=None,
        description="When the person gave or withdrew it (with a time zone); defaults to now. "
        "May be in the past (a paper form), not more than 5 minutes in the future.",
    )
    evidence: Attributes = Field(
        default_factory=dict,
        description="Proof kept with the history (ip, form version, double opt-in token id …), "
        f"at most {MAX_EVIDENCE_BYTES} bytes of compact JSON. Erased with the person.",
    )

    @field_validator("level", mode="after")
    @classmethod
    def _level_goes_with_state(cls, value: str | None, info: ValidationInfo) -> str | None:
        state = info.data.get("state")
        if state == "granted" and value is None:
            raise PydanticCustomError(
                "level_required", "required when state is granted (single or confirmed)"
            )
        if state == "denied" and value is not None:
            raise PydanticCustomError("level_not_allowed", "only a grant has a level")
        return value

    @field_validator("effective_at", mode="after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise PydanticCustomError("timezone_required", "a time zone is required")
        return _utc(value)

    @field_validator("evidence", mode="before")
    @classmethod
    def _evidence_storable(cls, value: Any) -> Any:
        checked = check_attributes(value)
        if isinstance(checked, dict):
            try:
                size = len(json.dumps(checked, ensure_ascii=False, separators=(",", ":")).encode())
            except (TypeError, ValueError):
                return checked  # the type check that follows reports it
            if size > MAX_EVIDENCE_BYTES:
                raise PydanticCustomError(
                    "too_large", f"at most {MAX_EVIDENCE_BYTES} bytes of compact JSON"
                )
        return checked


class ConsentUpdate(BaseModel):
    """Changes applied in order; a later change for the same channel and purpose wins."""

    model_config = ConfigDict(extra="forbid")

    changes: list[ConsentChangeIn] = Field(min_length=1, max_length=MAX_CHANGES)


class IdentifierIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: IdentifierKind
    value: str = Field(
        min_length=1,
        max_length=255,
        pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
        description="Normalised as the event API does (emails lower-cased, phones to E.164); "
        "must be a valid value of its kind.",
    )
    region: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z]{2}$",
        description="Phone only: the country (ISO 3166 alpha-2) a national number is read in.",
    )


class ConsentByIdentifier(ConsentUpdate):
    """Consent for whoever holds an identifier (found, or created as a new profile)."""

    identifier: IdentifierIn


class ConsentOut(BaseModel):
    """The current consent of a cluster for one channel and purpose: its latest change."""

    model_config = ConfigDict(from_attributes=True)

    channel: Channel
    purpose: Purpose
    state: State
    level: Level | None
    source: str
    effective_at: datetime
    recorded_at: datetime
    profile_id: str = Field(description="The profile of the cluster the change is stored on.")
    change_id: str


class ConsentChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    profile_id: str
    channel: Channel
    purpose: Purpose
    state: State
    level: Level | None
    source: str
    effective_at: datetime
    recorded_at: datetime
    changed_by: str | None
    evidence: dict[str, Any]


class ConsentView(BaseModel):
    profile_id: str
    cluster_id: str
    profile_ids: list[str]
    erased: bool = Field(description="The cluster was erased; nothing may be sent to it.")
    consents: list[ConsentOut] = Field(
        description="Only what was recorded; without a record marketing is not allowed and "
        "transactional messages are (docs/privacy.md)."
    )
    history: list[ConsentChangeOut] | None = Field(
        default=None, description="With `history=true`: the latest changes, newest first."
    )
    history_next_cursor: str | None = None


class ChangeResult(BaseModel):
    change_id: str
    channel: Channel
    purpose: Purpose
    state: State
    level: Level | None
    outcome: Outcome = Field(
        description="`changed`: the cluster's consent changed (a `consent.changed` event); "
        "`reconfirmed`: the same state given again (history only, no event); `superseded`: "
        "older than the current one (history only)."
    )


class ConsentUpdateOut(BaseModel):
    profile_id: str
    cluster_id: str
    created_profile: bool = Field(
        default=False, description="The identifier was unknown: a profile was created for it."
    )
    suppression_lifted: bool = Field(
        default=False,
        description="The identifier had been erased; this grant lets it be recorded again.",
    )
    results: list[ChangeResult]
    consents: list[ConsentOut]
