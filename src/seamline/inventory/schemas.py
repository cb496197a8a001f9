"""Location API shapes. Inputs are strict; the JSON Schema states every rule the server checks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from babel import Locale
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

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


def _json_number(value: Any) -> Any:
    """A unit count is a JSON number: `true` or `"5"` are not coerced into one. (A number with
    no fraction, such as `2.0`, is an integer to JSON Schema and accepted.)"""
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a JSON integer")
    return value


Quantity = Annotated[
    int,
    Field(ge=1, le=MAX_QUANTITY, description="Units, 1 … 1,000,000."),
    BeforeValidator(_json_number),
]
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

    expected_on_hand: Annotated[int, Field(ge=0, le=2**53), BeforeValidator(_json_number)]
    counted: Annotated[int, Field(ge=0, le=MAX_QUANTITY), BeforeValidator(_json_number)]
    reason: Reason | None = None


class StockLevelOut(BaseModel):
    location_id: str
    variant_id: str
    on_hand: int
    reserved: int
    available: int


class LocationStockOut(StockLevelOut):
    incoming: int = Field(description="Units in transit to this location.")


class VariantStockOut(BaseModel):
    variant_id: str
    on_hand: int
    reserved: int
    available: int
    in_transit: int = Field(description="Units between locations (in no location's on_hand).")
    buckets: int = Field(description="Rows per location (more than 1 for a split hot SKU).")
    locations: list[LocationStockOut]


class SplitSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    buckets: Annotated[
        int,
        Field(ge=1, le=64, description="Rows per location; 1 turns splitting off."),
    ]


class SplitOut(BaseModel):
    variant_id: str
    buckets: int


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


class ReservationLine(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    location_id: StockId | None = Field(
        default=None,
        description="Where to hold; omit it (with `channel_id` set) to let Seamline choose "
        "among the channel's locations, most available first.",
    )
    variant_id: StockId
    quantity: Quantity
    reference: StockReference


class ReservationCreate(BaseModel):
    """Hold every line or none. Without ``ttl_seconds`` the hold lasts until committed or
    released (an order's commitment); with it, the worker releases it when it expires.
    With ``channel_id`` the channel's stock rules apply (its locations, the units it must leave
    at each, its share cap)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # Without channel_id (absent or null) every line names its location.
            "if": {"properties": {"channel_id": {"type": "null"}}},
            "then": {
                "properties": {
                    "lines": {
                        "items": {
                            "required": ["location_id"],
                            "properties": {"location_id": {"type": "string"}},
                        }
                    }
                }
            },
        },
    )

    lines: Annotated[list[ReservationLine], Field(min_length=1, max_length=100)]
    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_TTL_SECONDS)] | None = None
    channel_id: StockId | None = None


class ReservationExtend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_TTL_SECONDS)]


class ReservationOut(BaseModel):
    id: str
    location_id: str
    variant_id: str
    quantity: int
    reference: str
    channel_id: str | None
    status: ReservationStatus
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ReservationList(BaseModel):
    data: list[ReservationOut]


# -- transfers -------------------------------------------------------------------------------

TransferStatus = Literal["in_transit", "received", "cancelled"]


class TransferLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant_id: StockId
    quantity: Quantity


class TransferCreate(BaseModel):
    """Send units from one location to another: they leave ``from_location_id`` now
    (``transfer_out``) and are in transit until received."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    from_location_id: StockId
    to_location_id: StockId
    lines: Annotated[list[TransferLineIn], Field(min_length=1, max_length=100)]
    reason: Reason | None = None
    reference: StockReference | None = None


class TransferReceivedLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant_id: StockId
    quantity: Annotated[int, Field(ge=0, le=MAX_QUANTITY)]


class TransferReceive(BaseModel):
    """Arrival at the destination. Without ``lines`` everything sent arrived; with them, the
    units that arrived per variant (fewer than sent records a shortfall; a variant left out
    arrived with none)."""

    model_config = ConfigDict(extra="forbid")

    lines: Annotated[list[TransferReceivedLine], Field(min_length=1, max_length=100)] | None = None


class TransferLineOut(BaseModel):
    variant_id: str
    quantity: int
    received_quantity: int | None


class TransferOut(BaseModel):
    id: str
    from_location_id: str
    to_location_id: str
    status: TransferStatus
    reason: str
    reference: str | None
    lines: list[TransferLineOut]
    created_at: datetime
    updated_at: datetime
    received_at: datetime | None


# -- channel stock rules and availability ---------------------------------------------------


class ChannelStockRuleSet(BaseModel):
    """What a channel may promise. ``keep_per_store`` units stay at each store for walk-ins
    (e.g. 2), ``keep_per_warehouse`` likewise per warehouse, and the channel offers at most
    ``max_share_percent`` of what is left (e.g. 50 for a marketplace)."""

    model_config = ConfigDict(extra="forbid")

    location_ids: Annotated[list[StockId], Field(max_length=500)] | None = Field(
        default=None,
        description="Locations the channel sells from; default: its store if it is a store "
        "channel, otherwise every active location that ships.",
    )
    keep_per_store: Annotated[int, Field(ge=0, le=MAX_QUANTITY)] = 0
    keep_per_warehouse: Annotated[int, Field(ge=0, le=MAX_QUANTITY)] = 0
    max_share_percent: Annotated[int, Field(ge=1, le=100)] = 100


class ChannelStockRuleOut(BaseModel):
    channel_id: str
    location_ids: list[str] | None
    keep_per_store: int
    keep_per_warehouse: int
    max_share_percent: int


class ChannelAvailability(BaseModel):
    channel_id: str
    available: int = Field(description="Units this channel may promise now.")


class VariantAvailability(BaseModel):
    variant_id: str
    on_hand: int
    reserved: int
    available: int
    locations: list[StockLevelOut]
    channels: list[ChannelAvailability]


class AvailabilityList(BaseModel):
    data: list[VariantAvailability]


class PickupItem(BaseModel):
    variant_id: str
    quantity: int
    available: int


class PickupStore(BaseModel):
    location_id: str
    name: str
    handle: str
    address_line1: str
    city: str
    postcode: str
    country: str
    coordinates: Coordinates
    distance_km: float
    time_zone: str
    today: list[Opening] = Field(description="Today's opening hours in the store's time zone.")
    open_now: bool
    items: list[PickupItem]


class PickupList(BaseModel):
    origin: Coordinates
    data: list[PickupStore]


class PostcodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    country: Country
    postcode: Annotated[
        str, Field(max_length=20, pattern=r"^[A-Za-z0-9 -]*[A-Za-z0-9][A-Za-z0-9 -]*$")
    ]
    place: AddressLine = ""
    coordinates: Coordinates


class PostcodeBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: Annotated[list[PostcodeIn], Field(min_length=1, max_length=1000)]


class PostcodesWritten(BaseModel):
    written: int
