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
