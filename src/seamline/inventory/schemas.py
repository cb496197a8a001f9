"""Location API shapes. Inputs are strict; the JSON Schema states every rule the server checks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from babel import Locale
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from seamline.channels.schemas import HANDLE_PATTERN
from seamline.kit.schemas import NAME_PATTERN, REFERENCE_PATTERN

LocationKind = Literal["warehouse", "store"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIME_ZONES = sorted(z for z in available_timezones() if "/" in z or z == "UTC")
COUNTRIES = sorted(
    str(c) for c in Locale("en").territories if len(str(c)) == 2 and str(c).isalpha()
)
_TIME_ZONES, _COUNTRIES = frozenset(TIME_ZONES), frozenset(COUNTRIES)
LOCAL_TIME_PATTERN = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"
ADDRESS_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


def _known(values: frozenset[str], what: str) -> Any:
    def check(value: str) -> str:
        if value not in values:
            raise ValueError(f"not a known {what}")
        return value

    return check


TimeZone = Annotated[
    str,
    AfterValidator(_known(_TIME_ZONES, "IANA time zone")),
    Field(
        json_schema_extra={"enum": TIME_ZONES}, description="IANA time zone, e.g. Europe/Berlin."
    ),
]
Country = Annotated[
    str,
    AfterValidator(_known(_COUNTRIES, "ISO 3166-1 alpha-2 country")),
    Field(json_schema_extra={"enum": COUNTRIES}, description="ISO 3166-1 alpha-2 code."),
]
AddressLine = Annotated[str, Field(max_length=200, pattern=ADDRESS_PATTERN)]
Postcode = Annotated[str, Field(max_length=20, pattern=r"^[A-Za-z0-9 -]*$")]
LocalTime = Annotated[str, Field(pattern=LOCAL_TIME_PATTERN, description="HH:MM, local time.")]


class Coordinates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latitude: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    longitude: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


class Opening(BaseModel):
    """One opening interval in local time. A close at or before the open closes after
    midnight; equal times mean open around the clock."""

    model_config = ConfigDict(extra="forbid")

    open: LocalTime
    close: LocalTime


OpeningHours = Annotated[
    dict[Weekday, Annotated[list[Opening], Field(max_length=4)]],
    Field(description="Intervals per weekday (`mon` … `sun`); a missing day is closed."),
]


class _LocationFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    address_line1: AddressLine | None = None
    address_line2: AddressLine | None = None
    city: AddressLine | None = None
    region: AddressLine | None = None
    postcode: Postcode | None = None
    coordinates: Coordinates | None = None
    opening_hours: OpeningHours | None = None
    ships: bool | None = None
    pickup: bool | None = None
    returns: bool | None = None
    sells_in_person: bool | None = None


class LocationCreate(_LocationFields):
    kind: LocationKind
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
    handle: Annotated[str, Field(pattern=HANDLE_PATTERN)]
    country: Country
    time_zone: TimeZone
    channel_id: Annotated[str, Field(max_length=40, pattern=REFERENCE_PATTERN)] | None = Field(
        default=None, description="The store channel selling here (stores only)."
    )


class LocationUpdate(_LocationFields):
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)] | None = None
    country: Country | None = None
    time_zone: TimeZone | None = None
    active: bool | None = None
    channel_id: Annotated[str, Field(max_length=40, pattern=REFERENCE_PATTERN)] | None = Field(
        default=None, description="Link a store channel; `null` unlinks it."
    )


class LocationOut(BaseModel):
    id: str
    kind: LocationKind
    name: str
    handle: str
    address_line1: str
    address_line2: str
    city: str
    region: str
    postcode: str
    country: str
    coordinates: Coordinates | None
    time_zone: str
    opening_hours: dict[str, list[Opening]]
    ships: bool
    pickup: bool
    returns: bool
    sells_in_person: bool
    channel_id: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


# -- stock and reservations ------------------------------------------------------------------

MAX_QUANTITY = 1_000_000
MAX_TTL_SECONDS = 7 * 24 * 3600
ID_PATTERN = r"^[a-z]{2,5}_[a-z0-9]{1,34}$"
StockId = Annotated[str, Field(min_length=4, max_length=40, pattern=ID_PATTERN)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY, description="Units, 1 … 1,000,000.")]
Reason = Annotated[str, Field(max_length=200, pattern=NAME_PATTERN)]
StockReference = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=REFERENCE_PATTERN, description="e.g. a cart line."),
]
MovementKind = Literal[
    "receipt", "sale", "return", "transfer_out", "transfer_in", "count", "adjustment", "damage"
]
ReservationStatus = Literal["held", "committed", "released", "expired"]


class _StockTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    location_id: StockId
    variant_id: StockId


class ReceiptCreate(_StockTarget):
    quantity: Quantity
    reason: Reason | None = None
    reference: StockReference | None = None


class AdjustmentCreate(_StockTarget):
    """``increase``/``decrease`` write an ``adjustment`` movement, ``damage`` removes units,
    ``return`` puts units back on the shelf."""

    kind: Literal["increase", "decrease", "damage", "return"]
    quantity: Quantity
    reason: Reason
    reference: StockReference | None = None


class CountCreate(_StockTarget):
    """An absolute count, accepted only if ``on_hand`` is still what the counter believed."""

    expected_on_hand: Annotated[int, Field(ge=0, le=2**53)]
    counted: Annotated[int, Field(ge=0, le=MAX_QUANTITY)]
    reason: Reason | None = None


class StockLevelOut(BaseModel):
    location_id: str
    variant_id: str
    on_hand: int
    reserved: int
    available: int


class VariantStockOut(BaseModel):
    variant_id: str
    on_hand: int
    reserved: int
    available: int
    locations: list[StockLevelOut]


class MovementOut(BaseModel):
    id: int
    location_id: str
    variant_id: str
    kind: MovementKind
    quantity: int
    reason: str
    actor: str | None
    reference: str | None
    created_at: datetime


class ReservationLine(_StockTarget):
    quantity: Quantity
    reference: StockReference


class ReservationCreate(BaseModel):
    """Hold every line or none. Without ``ttl_seconds`` the hold lasts until committed or
    released (an order's commitment); with it, the worker releases it when it expires."""

    model_config = ConfigDict(extra="forbid")

    lines: Annotated[list[ReservationLine], Field(min_length=1, max_length=100)]
    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_TTL_SECONDS)] | None = None


class ReservationExtend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_TTL_SECONDS)]


class ReservationOut(BaseModel):
    id: str
    location_id: str
    variant_id: str
    quantity: int
    reference: str
    status: ReservationStatus
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ReservationList(BaseModel):
    data: list[ReservationOut]
