"""API shapes for webhook endpoints, their attempts, and the event log."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from seamline.kit.schemas import PlainText

EVENT_TYPE_PATTERN = r"^(\*|[a-z_]+(\.[a-z_]+)*(\.\*)?)$"
# http(s), a host name (its last label starts with a letter: a host ending in a number is parsed
# as an IPv4 address by URL parsers), an IPv4 address or a bracketed IPv6 address, an optional
# port and a printable-ASCII path: the pattern is in the OpenAPI document; the parsed-URL check
# after it only adds what a regex cannot say.
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# RFC 3986's IPv6address, spelled out so every address the pattern admits is a real one.
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_OCTET}(?:\.{_OCTET}){{3}})"
_IPV6 = "|".join(
    [
        rf"(?:{_H16}:){{6}}{_LS32}",
        rf"::(?:{_H16}:){{5}}{_LS32}",
        rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
        rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
        rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
        rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
    ]
)
_HOST = (
    rf"(?:(?:{_LABEL}\.){{0,20}}[A-Za-z](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
    rf"|{_OCTET}(?:\.{_OCTET}){{3}}"
    rf"|\[(?:{_IPV6})\])"
)
URL_PATTERN = rf"^https?://{_HOST}(?::{_PORT})?(?:/[!-~]*)?$"
MAX_URL_LENGTH = 2048
MAX_EVENT_TYPE_LENGTH = 100

EventTypePattern = Annotated[
    str, Field(max_length=MAX_EVENT_TYPE_LENGTH, pattern=EVENT_TYPE_PATTERN)
]
EndpointUrl = Annotated[str, Field(max_length=MAX_URL_LENGTH, pattern=URL_PATTERN)]
EVENT_TYPES_DESCRIPTION = "Event types to receive; `order.*` matches a family, `*` everything."


def check_url(value: str) -> str:
    AnyHttpUrl(value)  # raises ValueError on what the pattern lets through but is no URL
    host = urlsplit(value).netloc.rpartition("@")[2]
    if host.startswith("["):
        ipaddress.IPv6Address(host[1 : host.index("]")])  # ValueError if not an IPv6 address
    return value


class WebhookEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: EndpointUrl
    event_types: list[EventTypePattern] = Field(
        min_length=1, max_length=100, description=EVENT_TYPES_DESCRIPTION
    )
    description: PlainText = Field(default="", max_length=500)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        return sorted(set(value))

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)


class WebhookEndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: EndpointUrl | None = None
    event_types: list[EventTypePattern] | None = Field(
        default=None, min_length=1, max_length=100, description=EVENT_TYPES_DESCRIPTION
    )
    description: PlainText | None = Field(default=None, max_length=500)
    status: Literal["enabled", "disabled"] | None = None

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted(set(value))

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)


class WebhookEndpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    event_types: list[str]
    description: str
    status: str
    disabled_reason: str | None
    disabled_at: datetime | None
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
