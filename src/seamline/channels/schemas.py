"""Channel API shapes. Inputs are strict: unknown fields are refused, not ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ChannelKind = Literal[
    "web", "app", "store", "marketplace", "social", "email", "sms", "push", "phone", "chat"
]

HANDLE_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: ChannelKind
    name: str = Field(min_length=1, max_length=200)
    handle: str = Field(
        pattern=HANDLE_PATTERN,
        description="Unique, lower-case slug used in URLs and reports, e.g. `web-eu`.",
    )
    location_id: str | None = Field(default=None, max_length=40)
    attributes: dict[str, Any] = Field(default_factory=dict)


class ChannelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    location_id: str | None = Field(default=None, max_length=40)
    active: bool | None = None
    attributes: dict[str, Any] | None = None


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
