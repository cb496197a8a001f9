"""Segment-compatible call shapes (the HTTP tracking API spec) and the API's answers.

Unlike the rest of the API, unknown fields are ignored rather than refused: Segment and
RudderStack clients add their own (``writeKey``, ``integrations``, ``_metadata``, ``channel``…)
and existing clients must work unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict

from seamline.identity.consent_schemas import ConsentOut
from seamline.identity.models import ID_VALUE_MAX, NAME_MAX

CallType = Literal["track", "identify", "page", "screen", "group", "alias"]
CALL_TYPES: tuple[CallType, ...] = ("track", "identify", "page", "screen", "group", "alias")

IdText = Annotated[str, StringConstraints(min_length=1, max_length=ID_VALUE_MAX)]
# Segment ids are strings; some clients send numbers, which are stored as their text.
# Strict: `true` is not user id "1", and `1.0` is not either (both would fuse strangers).
Id = IdText | Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]
Name = Annotated[str, StringConstraints(max_length=NAME_MAX)]

_NEEDS_AN_ID: JsonDict = {"anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}]}


class Call(BaseModel):
    """Fields every call shares."""

    model_config = ConfigDict(extra="ignore", populate_by_name=False)

    type: CallType | None = Field(
        default=None, description="Implied by the path; required inside a batch."
    )
    message_id: IdText | None = Field(
        default=None,
        alias="messageId",
        description="Deduplicated per write key; one is generated when absent.",
    )
    user_id: Id | None = Field(default=None, alias="userId")
    anonymous_id: Id | None = Field(default=None, alias="anonymousId")
    timestamp: datetime | None = Field(
        default=None, description="When it happened, by the device's clock."
    )
    sent_at: datetime | None = Field(
        default=None, alias="sentAt", description="When the device sent it (for clock skew)."
    )
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="channel, ip, userAgent, campaign, device, locale, traits, externalIds…",
    )
    integrations: dict[str, Any] = Field(default_factory=dict)
    channel: Annotated[str, StringConstraints(max_length=40)] | None = Field(
        default=None, description="RudderStack's place for `context.channel`."
    )

    @model_validator(mode="after")
    def _identified(self) -> Call:
        # An id of only spaces names nobody: it counts as missing.
        if self.user_id is not None and not str(self.user_id).strip():
            self.user_id = None
        if self.anonymous_id is not None and not str(self.anonymous_id).strip():
            self.anonymous_id = None
        if self.user_id is None and self.anonymous_id is None:
            raise ValueError("userId or anonymousId is required")
        return self


class TrackCall(Call):
    model_config = ConfigDict(json_schema_extra=_NEEDS_AN_ID)

    event: Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX)]
    properties: dict[str, Any] = Field(default_factory=dict)


class IdentifyCall(Call):
    model_config = ConfigDict(json_schema_extra=_NEEDS_AN_ID)

    traits: dict[str, Any] = Field(default_factory=dict)


class PageCall(Call):
    model_config = ConfigDict(json_schema_extra=_NEEDS_AN_ID)

    name: Name | None = None
    category: Name | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class ScreenCall(Call):
    model_config = ConfigDict(json_schema_extra=_NEEDS_AN_ID)

    name: Name | None = None
    category: Name | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class GroupCall(Call):
    model_config = ConfigDict(json_schema_extra=_NEEDS_AN_ID)

    group_id: Id = Field(alias="groupId")
    traits: dict[str, Any] = Field(default_factory=dict)


class AliasCall(Call):
    user_id: Id = Field(alias="userId")
    previous_id: Id = Field(alias="previousId", description="Taken as an anonymous id.")


CALL_MODELS: dict[str, type[Call]] = {
    "track": TrackCall,
    "identify": IdentifyCall,
    "page": PageCall,
    "screen": ScreenCall,
    "group": GroupCall,
    "alias": AliasCall,
}


class Rejection(BaseModel):
    """A call of a batch that was not stored, and why."""

    index: int = Field(description="Position in `batch`, from 0.")
    reason: str


class Ack(BaseModel):
    """Segment's answer (`{"success": true}`), plus the calls of a batch that were refused."""

    success: Literal[True]
    rejected: list[Rejection] = Field(
        default_factory=list, description="Only in a batch's answer, when calls were refused."
    )


def call_schema(call_type: str, *, in_batch: bool) -> dict[str, Any]:
    """The JSON Schema of one call, inline (no references), for the OpenAPI request bodies."""
    schema = CALL_MODELS[call_type].model_json_schema(by_alias=True)
    schema.pop("title", None)
    schema["properties"]["type"] = {"const": call_type}
    if in_batch:
        schema["required"] = sorted({*schema.get("required", []), "type"})
    return schema


def batch_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["batch"],
        "properties": {
            "batch": {
                "type": "array",
                "items": {"oneOf": [call_schema(t, in_batch=True) for t in CALL_TYPES]},
            },
            "sentAt": {"type": "string", "format": "date-time"},
            "context": {"type": "object"},
        },
    }


# -- customer 360 and unmerge (profiles_api.py) ------------------------------------------------


class IdentifierOut(BaseModel):
    kind: str
    value: str
    valid: bool
    profile_id: str
    source_channel: str | None
    first_seen: datetime
    last_seen: datetime


class TraitOut(BaseModel):
    value: Any
    observed_at: datetime
    source: str
    profile_id: str
    strategy: Literal["latest", "first", "non_empty"]


class TimelineEvent(BaseModel):
    """One item of the timeline: a tracked call (``kind: tracked``) or a domain event about the
    customer (``kind: domain``). Fields of the other kind are null (or empty)."""

    kind: Literal["tracked", "domain"]
    id: str = Field(description="`tev_…` (a tracked call) or `tle_…` (a timeline entry).")
    profile_id: str
    type: str = Field(description="The call type (`track` …) or the event type (`order.placed`).")
    name: str | None = Field(description="A tracked call's event or page name.")
    category: str | None
    channel: str | None
    timestamp: datetime = Field(description="When it happened (the event time).")
    summary: str = Field(description="One short line for people.")
    message_id: str | None = Field(description="Tracked: the call's `messageId`.")
    received_at: datetime | None = Field(description="Tracked: when the server received it.")
    properties: dict[str, Any] = Field(description="Tracked: the call's properties.")
    traits: dict[str, Any] = Field(description="Tracked: the call's traits.")
    event_id: str | None = Field(description="Domain: the outbox event id (`evt_…`).")
    aggregate_type: str | None = Field(description="Domain: what the event is about.")
    aggregate_id: str | None
    data: dict[str, Any] | None = Field(description="Domain: the event's payload.")


class PurchasesOut(BaseModel):
    """Purchases in one currency, summed over the cluster. Amounts are integers in minor units
    of ``currency``."""

    currency: str
    orders_count: int
    total_spent: int = Field(description="Sum of order totals (before refunds).")
    refunded: int
    lifetime_value: int = Field(description="`total_spent - refunded`.")
    average_order_value: int | None = Field(
        description="`total_spent / orders_count`, rounded half up."
    )
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None


class MetricsOut(BaseModel):
    purchases: list[PurchasesOut] = Field(description="One entry per currency, by code.")
    channels_used: list[str] = Field(description="Every channel the customer was seen on.")
    channels_count: int
    last_seen: dict[str, datetime] = Field(description="The latest event time per channel.")


# The consent channels (customer_models.CONSENT_CHANNELS): how the brand may contact someone.
ContactChannel = Literal["email", "sms", "push", "whatsapp", "phone"]
# Printable text without surrounding spaces (stripped first) and without control characters.
_TEXT = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"


class AdvisorIn(BaseModel):
    """A staff member. There is no staff table yet: the id is the brand's own, kept as given
    (it will reference the staff table when the console lands)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    staff_id: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:@-]+$")
    name: str = Field(min_length=1, max_length=200, pattern=_TEXT)


class PreferencesIn(BaseModel):
    """Fields sent are set (``null`` clears one); fields left out keep their value."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    size: str | None = Field(default=None, min_length=1, max_length=40, pattern=_TEXT)
    favourite_store: str | None = Field(
        default=None,
        max_length=40,
        pattern=r"^[a-z0-9_]+$",
        description="A location id (`loc_…`).",
    )
    preferred_channel: ContactChannel | None = None
    advisor: AdvisorIn | None = None


class PreferenceValues(BaseModel):
    size: str | None
    favourite_store: str | None
    preferred_channel: ContactChannel | None
    updated_at: datetime | None = Field(description="When a preference was last set.")


class AdvisorOut(BaseModel):
    staff_id: str
    name: str
    assigned_at: datetime
    assigned_by: str | None = Field(description="The API key that assigned them.")


class PreferencesOut(BaseModel):
    preferences: PreferenceValues
    advisor: AdvisorOut | None


class ProfileOut(BaseModel):
    """A customer's whole cluster, read from any of its profiles."""

    profile_id: str = Field(description="The profile asked for.")
    cluster_id: str = Field(description="The cluster's canonical profile.")
    profile_ids: list[str]
    identifiers: list[IdentifierOut]
    traits: dict[str, TraitOut]
    consent: list[ConsentOut] = Field(description="Current consent per channel and purpose.")
    metrics: MetricsOut
    preferences: PreferenceValues
    advisor: AdvisorOut | None
    events: list[TimelineEvent] = Field(
        description="The latest 20 timeline items (tracked calls and domain events)."
    )


class UnmergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    merge_id: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")
    reason: str = Field(
        min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
    )


class UnmergeOut(BaseModel):
    merge_id: str
    profile_id: str
    profile_cluster_id: str
    into_profile_id: str
    into_cluster_id: str
