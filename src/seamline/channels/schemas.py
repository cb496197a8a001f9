"""Channel API shapes. Inputs are strict: unknown fields are refused, not ignored.

Every constraint the server enforces is also written into the JSON Schema, so the OpenAPI
document tells clients (and the fuzzer) exactly which requests are valid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from seamline.kit.schemas import (
    ATTRIBUTES_DESCRIPTION,
    NAME_PATTERN,
    REFERENCE_PATTERN,
    Attributes,
    check_attributes,
)

ChannelKind = Literal[
    "web", "app", "store", "marketplace", "social", "email", "sms", "push", "phone", "chat"
]

HANDLE_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: ChannelKind
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    handle: str = Field(
        pattern=HANDLE_PATTERN,
        description="Unique, lower-case slug used in URLs and reports, e.g. `web-eu`.",
    )
    location_id: str | None = Field(default=None, max_length=40, pattern=REFERENCE_PATTERN)
    attributes: Attributes = Field(default_factory=dict, description=ATTRIBUTES_DESCRIPTION)

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes_storable(cls, value: Any) -> Any:
        return check_attributes(value)


class ChannelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NAME_PATTERN)
    location_id: str | None = Field(
        default=None,
        max_length=40,
        pattern=REFERENCE_PATTERN,
        description="The store location this channel sells at; `null` clears it.",
    )
    active: bool | None = None
    attributes: Attributes | None = Field(
        default=None, description=ATTRIBUTES_DESCRIPTION + " Replaces the whole object."
    )

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes_storable(cls, value: Any) -> Any:
        return check_attributes(value)


class ChannelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: ChannelKind
    name: str
    handle: str
    location_id: str | None
    active: bool
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
