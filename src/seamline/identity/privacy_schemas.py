"""Privacy API shapes (privacy_api.py): the erase request, its answer, the request log and the
export document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from seamline.kit.schemas import NAME_PATTERN

Row = dict[str, Any]


class EraseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(
        min_length=1,
        max_length=500,
        pattern=NAME_PATTERN,
        description="Why, for the log (`customer request, ticket 4411`). Kept after the erasure: "
        "write no personal data here.",
    )


class ErasureOut(BaseModel):
    privacy_request_id: str
    profile_id: str
    cluster_id: str
    profile_ids: list[str]
    erased_at: datetime
    previously_erased: bool = Field(
        description="The cluster had been erased before; this run removed anything that "
        "arrived meanwhile."
    )
    summary: dict[str, int] = Field(description="What was deleted, blanked or kept, by kind.")


class PrivacyRequestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: Literal["export", "erase"]
    profile_id: str
    cluster_id: str
    profile_ids: list[str]
    status: Literal["completed", "failed"]
    requested_by: str | None = Field(description="API key id, or `cli:<user>`.")
    reason: str | None
    requested_at: datetime
    completed_at: datetime | None
    summary: dict[str, int]


class ExportConsent(BaseModel):
    current: list[Row]
    history: list[Row]


class CustomerExport(BaseModel):
    """Everything Seamline stores about a customer's cluster (docs/privacy.md, "Export")."""

    format: Literal["seamline.customer-export/1"]
    request_id: str
    exported_at: str
    profile_id: str
    cluster_id: str
    profile_ids: list[str]
    erased: bool
    profiles: list[Row]
    identifiers: list[Row]
    traits: list[Row]
    preferences: list[Row]
    events: list[Row]
    channel_activity: list[Row]
    consent: ExportConsent
    merges: list[Row]
    timeline: list[Row]
    orders: list[Row]
    metrics: list[Row]
    domain_events: list[Row]
    privacy_requests: list[Row]
