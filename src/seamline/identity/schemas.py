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
    strategy: Literal["latest", "first"]


class TimelineEvent(BaseModel):
    id: str
    profile_id: str
    message_id: str
    type: str
    name: str | None
    category: str | None
    channel: str | None
    timestamp: datetime
    received_at: datetime
    properties: dict[str, Any]
    traits: dict[str, Any]


class ProfileOut(BaseModel):
    """A customer's whole cluster, read from any of its profiles."""

    profile_id: str = Field(description="The profile asked for.")
    cluster_id: str = Field(description="The cluster's canonical profile.")
    profile_ids: list[str]
    identifiers: list[IdentifierOut]
    traits: dict[str, TraitOut]
    events: list[TimelineEvent] = Field(description="The latest 20 tracked events.")


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
