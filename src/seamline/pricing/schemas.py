"""Pricing configuration API shapes: promotions (and personal codes), tax, shipping rates.

Inputs are strict (unknown fields refused) and state in their JSON Schema every constraint that
concerns one field. Rules between fields (a percentage is at most 10000 basis points, a fixed
amount needs its currency, ``ends_at`` after ``starts_at``, weight bands only on ``weight_band``
rates...) are the engine's own dataclass validation, run on every write and answered as 422
with the field's path (see docs/pricing.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from babel import Locale
from babel.numbers import list_currencies
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from seamline.kit.schemas import NAME_PATTERN, REFERENCE_PATTERN

PromotionKind = Literal["percentage", "fixed_amount", "free_shipping"]
AppliesTo = Literal["all", "products", "collections"]
ShippingKind = Literal["flat", "weight_band", "free_over"]

# Integer columns are 32-bit on PostgreSQL: amounts and limits stay below 2**31.
MAX_AMOUNT = 2**31 - 1
# Codes people type from a poster or read over the phone: ASCII letters, digits, - and _.
# (ASCII only, so the folded form is never longer than the code: the unique key fits.)
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$"
CURRENCIES = sorted(c for c in list_currencies() if len(c) == 3 and c.isupper())
_CURRENCY_SET = frozenset(CURRENCIES)
# ISO 3166-1 alpha-2 codes Babel knows, without its groupings (EU, UN…) and "unknown" (ZZ).
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "ZZ"})
COUNTRIES = sorted(
    c
    for c in Locale("en").territories
    if isinstance(c, str)
    and len(c) == 2
    and c.isalpha()
    and c.isupper()
    and c not in _NOT_COUNTRIES
)
_COUNTRY_SET = frozenset(COUNTRIES)
# Datetimes must survive conversion to UTC on every backend.
_EARLIEST = 1900
_LATEST = 9998


def _known_currency(code: str) -> str:
    if code not in _CURRENCY_SET:
        raise ValueError("not an ISO 4217 currency code")
    return code


def _known_country(code: str) -> str:
    if code not in _COUNTRY_SET:
        raise ValueError("not an ISO 3166-1 alpha-2 country code")
    return code


def _storable_datetime(value: datetime) -> datetime:
    """In UTC, as it is stored (so a write answers what a later read shows)."""
    if not _EARLIEST <= value.year <= _LATEST:
        raise ValueError(f"the year must be between {_EARLIEST} and {_LATEST}")
    return value.astimezone(UTC)


Currency = Annotated[
    str,
    AfterValidator(_known_currency),
    Field(json_schema_extra={"enum": CURRENCIES}, description="ISO 4217 code, e.g. `EUR`."),
]
Country = Annotated[
    str,
    AfterValidator(_known_country),
    Field(json_schema_extra={"enum": COUNTRIES}, description="ISO 3166-1 alpha-2, e.g. `FR`."),
]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
Code = Annotated[
    str,
    Field(
        pattern=CODE_PATTERN,
        description="Entered at checkout; matched case-insensitively and unique that way.",
    ),
]
Reference = Annotated[str, Field(min_length=1, max_length=40, pattern=REFERENCE_PATTERN)]
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT, description="Minor units (cents).")]
Limit = Annotated[int, Field(ge=1, le=MAX_AMOUNT)]
Moment = Annotated[
    AwareDatetime,
    AfterValidator(_storable_datetime),
    Field(description="With a time zone offset (naive datetimes are refused)."),
]
BasisPoints = Annotated[int, Field(ge=0, le=10_000, description="1500 = 15 %.")]

VALUE_DESCRIPTION = (
    "Basis points for `percentage` (1..10000; 1500 = 15 %), minor units of `currency` for "
    "`fixed_amount` (at least 1), 0 for `free_shipping`."
)
TARGETS_DESCRIPTION = "Product ids (`products`) or collection ids (`collections`); empty for `all`."
CHANNELS_DESCRIPTION = "Channel ids where it applies; `null`: every channel."


# -- promotions ------------------------------------------------------------------------------


class PromotionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name
    kind: PromotionKind
    value: Annotated[int, Field(ge=0, le=MAX_AMOUNT, description=VALUE_DESCRIPTION)] = 0
    code: Code | None = Field(default=None, description="`null`: an automatic promotion.")
    applies_to: AppliesTo = "all"
    target_ids: Annotated[list[Reference], Field(max_length=500)] = Field(
        default_factory=list, description=TARGETS_DESCRIPTION
    )
    min_subtotal: Amount = Field(
        default=0, description="Minimum subtotal of the lines it reaches (needs `currency`)."
    )
    currency: Currency | None = Field(
        default=None, description="Required for `fixed_amount` and a `min_subtotal` above 0."
    )
    starts_at: Moment | None = None
    ends_at: Moment | None = Field(default=None, description="Exclusive; after `starts_at`.")
    channel_ids: Annotated[list[Reference], Field(max_length=100)] | None = Field(
        default=None, description=CHANNELS_DESCRIPTION
    )
    profile_id: Reference | None = Field(
        default=None, description="A personal promotion: only this customer may use it."
    )
    usage_limit: Limit | None = Field(default=None, description="Uses in total; `null`: none.")
    usage_limit_per_profile: Limit | None = Field(
        default=None, description="Uses per customer (identity cluster); `null`: none."
    )
    active: bool = True


class PromotionUpdate(BaseModel):
    """The fields sent change; ``null`` clears the nullable ones and is ignored on the others.
    ``kind`` and ``profile_id`` cannot change (create another promotion instead)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name | None = None
    value: Annotated[int, Field(ge=0, le=MAX_AMOUNT, description=VALUE_DESCRIPTION)] | None = None
    code: Code | None = Field(default=None, description="`null` makes it automatic.")
    applies_to: AppliesTo | None = None
    target_ids: Annotated[list[Reference], Field(max_length=500)] | None = Field(
        default=None, description=TARGETS_DESCRIPTION
    )
    min_subtotal: Amount | None = None
    currency: Currency | None = Field(default=None, description="`null` clears it.")
    starts_at: Moment | None = Field(default=None, description="`null`: already started.")
    ends_at: Moment | None = Field(default=None, description="`null`: never ends.")
    channel_ids: Annotated[list[Reference], Field(max_length=100)] | None = Field(
        default=None, description=CHANNELS_DESCRIPTION
    )
    usage_limit: Limit | None = Field(
        default=None, description="`null` removes it; never below `used_count` (409)."
    )
    usage_limit_per_profile: Limit | None = Field(default=None, description="`null` removes it.")
    active: bool | None = None


class IssueCode(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    profile_id: Reference = Field(description="The customer the code is for.")
    prefix: Annotated[str, Field(pattern=PREFIX_PATTERN)] | None = Field(
        default=None,
        description="Put before the generated part, e.g. `INSTA` gives `INSTA-K7Q-M9P`.",
    )


class PromotionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    code: str | None
    kind: PromotionKind
    value: int
    applies_to: AppliesTo
    target_ids: list[str]
    min_subtotal: int
    currency: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    channel_ids: list[str] | None
    profile_id: str | None
    usage_limit: int | None
    usage_limit_per_profile: int | None
    used_count: int = Field(description="Uses held by paying checkouts or used by orders.")
    active: bool
    created_at: datetime
    updated_at: datetime


# -- tax -------------------------------------------------------------------------------------


class TaxRateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    country: Country
    region: Annotated[str, Field(min_length=1, max_length=100, pattern=NAME_PATTERN)] | None = (
        Field(
            default=None,
            description="`null`: the whole country. A region rate replaces the country's "
            "rates unless `combinable`. Use the ISO 3166-2 suffix (`BC`, `CA`).",
        )
    )
    rate: BasisPoints
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=NAME_PATTERN)]
    combinable: bool = Field(
        default=False, description="Region rates only: add to the country rate."
    )


class TaxRateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    country: str
    region: str | None
    rate: int
    name: str
    combinable: bool
    created_at: datetime
    updated_at: datetime


class TaxSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prices_include_tax: bool = Field(description="Catalogue prices include tax (EU, UK).")
    tax_shipping: bool = Field(description="Shipping is taxed at the destination's rate.")


class TaxSettingsOut(BaseModel):
    prices_include_tax: bool
    tax_shipping: bool
    updated_at: datetime | None


# -- shipping --------------------------------------------------------------------------------


class WeightBand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_grams: Annotated[int, Field(ge=0, le=MAX_AMOUNT, description="Inclusive.")]
    price: Amount


Bands = Annotated[
    list[WeightBand],
    Field(max_length=100, description="`weight_band` only; `max_grams` strictly increasing."),
]
Countries = Annotated[list[Country], Field(max_length=300)]


class ShippingRateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name
    currency: Currency
    kind: ShippingKind
    price: Amount = Field(default=0, description="`flat` and `free_over` (below the threshold).")
    bands: Bands = Field(default_factory=list)
    free_over: Amount | None = Field(default=None, description="`free_over` only.")
    countries: Countries | None = Field(default=None, description="`null`: every country.")
    active: bool = True


class ShippingRateUpdate(BaseModel):
    """The fields sent change. ``kind`` and ``currency`` cannot (create another rate)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name | None = None
    price: Amount | None = None
    bands: Bands | None = None
    free_over: Amount | None = Field(default=None, description="`null` clears it.")
    countries: Countries | None = Field(default=None, description="`null`: every country.")
    active: bool | None = None


class WeightBandOut(BaseModel):
    max_grams: int
    price: int


class ShippingRateOut(BaseModel):
    id: str
    name: str
    currency: str
    kind: ShippingKind
    price: int
    bands: list[WeightBandOut]
    free_over: int | None
    countries: list[str] | None
    active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Any) -> ShippingRateOut:
        return cls(
            id=row.id,
            name=row.name,
            currency=row.currency,
            kind=row.kind,
            price=row.price,
            bands=[WeightBandOut(max_grams=int(b[0]), price=int(b[1])) for b in row.bands],
            free_over=row.free_over,
            countries=row.countries,
            active=row.active,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
