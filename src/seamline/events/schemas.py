"""API shapes for webhook endpoints, their attempts, and the event log."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

EVENT_TYPE_PATTERN = re.compile(r"^(\*|[a-z_]+(\.[a-z_]+)*(\.\*)?)$")


def check_event_types(value: list[str]) -> list[str]:
    bad = [t for t in value if not EVENT_TYPE_PATTERN.match(t)]
    if bad:
        raise ValueError(f"not an event type pattern: {', '.join(bad[:3])}")
    return sorted(set(value))


class WebhookEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: AnyHttpUrl
    event_types: list[str] = Field(
        min_length=1,
        max_length=100,
        description="Event types to receive; `order.*` matches a family, `*` everything.",
    )
    description: str = Field(default="", max_length=500)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        return check_event_types(value)

    @field_validator("url")
    @classmethod
    def _url_len(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if len(str(value)) > 2048:
            raise ValueError("at most 2048 characters")
        return value


class WebhookEndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: AnyHttpUrl | None = None
    event_types: list[str] | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    status: Literal["enabled", "disabled"] | None = None

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_event_types(value)


class WebhookEndpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    event_types: list[str]
    description: str
    status: str
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpointOut):
    secret: str = Field(description="Signing secret (`whsec_…`); shown only now.")


class WebhookAttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: str
    event_type: str
    attempt: int
    ok: bool
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    duration_ms: int
    attempted_at: datetime
    next_retry_at: datetime | None


class EventOut(BaseModel):
    id: str
    type: str
    created_at: datetime
    aggregate: dict[str, str]
    data: dict[str, Any]


class DeadLetterOut(BaseModel):
    kind: Literal["delivery", "timer"]
    id: int
    consumer: str
    reference: str = Field(description="Event id for deliveries, timer key for timers")
    attempts: int
    last_error: str | None
