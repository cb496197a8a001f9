"""Catalog API shapes. Inputs are strict (unknown fields refused) and their JSON Schema states
every constraint the server enforces, except the GTIN check digit (see docs/catalog.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from babel.numbers import list_currencies
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from seamline.catalog.codes import barcode_problem
from seamline.kit.schemas import (
    ATTRIBUTES_DESCRIPTION,
    NAME_PATTERN,
    Attributes,
    PlainText,
    _ClosedKeys,
    check_attributes,
)

ProductStatus = Literal["draft", "active", "archived"]

HANDLE_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$"
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"
BARCODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$"
# C1 controls are excluded explicitly: Python's \s matches U+0085 but JSON Schema's does not.
URL_PATTERN = r"^https?://[^\s\x00-\x1f\x7f-\x9f|]{1,2000}$"
# Tags are joined with "|" in CSV files, so a tag cannot contain one.
TAG_PATTERN = r"^[^\x00-\x1f\x7f-\x9f|]*[^\s\x00-\x1f\x7f-\x9f|][^\x00-\x1f\x7f-\x9f|]*$"
CURRENCIES = sorted(c for c in list_currencies() if len(c) == 3 and c.isupper())
_CURRENCY_SET = frozenset(CURRENCIES)
MAX_AMOUNT = 10**15  # minor units; far above any real price, far below BIGINT


def _known_currency(code: str) -> str:
    if code not in _CURRENCY_SET:
        raise ValueError("not an ISO 4217 currency code")
    return code


def _valid_barcode(code: str | None) -> str | None:
    problem = barcode_problem(code) if code else None
    if problem:
        raise ValueError(problem)
    return code


Currency = Annotated[
    str, AfterValidator(_known_currency), Field(json_schema_extra={"enum": CURRENCIES})
]
Handle = Annotated[str, Field(pattern=HANDLE_PATTERN, description="Unique lower-case slug.")]
Title = Annotated[str, Field(min_length=1, max_length=300, pattern=NAME_PATTERN)]
Sku = Annotated[str, Field(pattern=SKU_PATTERN, description="Unique stock-keeping unit.")]
Barcode = Annotated[
    str,
    Field(
        pattern=BARCODE_PATTERN,
        description="GTIN-8/12/13/14 (all digits: the check digit is verified) or any other "
        "code, unique when present.",
    ),
    AfterValidator(_valid_barcode),
]
OptionName = Annotated[str, Field(min_length=1, max_length=50, pattern=NAME_PATTERN)]
OptionValue = Annotated[str, Field(min_length=1, max_length=100, pattern=NAME_PATTERN)]
Options = Annotated[
    dict[OptionName, OptionValue],
    _ClosedKeys,
    Field(max_length=10, description='Option values, e.g. `{"size": "M", "colour": "black"}`.'),
]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=TAG_PATTERN)]
MediaUrl = Annotated[str, Field(max_length=2048, pattern=URL_PATTERN)]
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT, description="Minor units (cents).")]
Weight = Annotated[int, Field(ge=0, le=10_000_000, description="Grams.")]


class PriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount
    compare_at: Amount | None = Field(default=None, description="A 'was' price shown struck out.")


Prices = Annotated[
    dict[Currency, PriceIn],
    Field(max_length=50, description="One price per ISO 4217 currency, in minor units."),
]


class VariantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sku: Sku
    barcode: Barcode | None = None
    title: Annotated[str, Field(max_length=300, pattern=NAME_PATTERN)] | None = None
    options: Options = Field(default_factory=dict)
    weight_grams: Weight | None = None
    prices: Prices = Field(default_factory=dict)


class VariantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sku: Sku | None = None
    barcode: Barcode | None = Field(default=None, description="`null` clears the barcode.")
    title: Annotated[str, Field(max_length=300, pattern=NAME_PATTERN)] | None = None
    options: Options | None = None
    weight_grams: Weight | None = Field(default=None, description="`null` clears the weight.")


class PricesSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prices: Annotated[
        dict[Currency, PriceIn | None],
        Field(max_length=50, description="Currencies to set; `null` removes that currency."),
    ]


class _ProductFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    description: Annotated[str, Field(max_length=20_000)] | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None
    media: Annotated[list[MediaUrl], Field(max_length=20)] | None = None
    attributes: Attributes | None = Field(default=None, description=ATTRIBUTES_DESCRIPTION)

    @field_validator("description")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        return value

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes_storable(cls, value: Any) -> Any:
        return check_attributes(value)


class ProductCreate(_ProductFields):
    title: Title
    handle: Handle | None = Field(default=None, description="Derived from the title if absent.")
    status: ProductStatus = "draft"
    description: PlainText | None = Field(default=None, max_length=20_000)
    variants: Annotated[list[VariantCreate], Field(min_length=1, max_length=100)]


class ProductUpdate(_ProductFields):
    title: Title | None = None
    handle: Handle | None = None
    status: ProductStatus | None = None
    description: PlainText | None = Field(default=None, max_length=20_000)


class ListingSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    published: bool = True


class PriceOut(BaseModel):
    amount: int
    compare_at: int | None


class VariantOut(BaseModel):
    id: str
    product_id: str
    sku: str
    barcode: str | None
    title: str
    options: dict[str, Any]
    weight_grams: int | None
    prices: dict[str, PriceOut]
    created_at: datetime
    updated_at: datetime


class ListingOut(BaseModel):
    product_id: str
    channel_id: str
    published: bool
    published_at: datetime | None
    updated_at: datetime


class ProductOut(BaseModel):
    id: str
    title: str
    handle: str
    description: str
    status: ProductStatus
    tags: list[str]
    media: list[str]
    attributes: dict[str, Any]
    variants: list[VariantOut]
    listings: list[ListingOut]
    collection_ids: list[str]
    created_at: datetime
    updated_at: datetime


class ProductSummary(BaseModel):
    id: str
    title: str
    handle: str
    status: ProductStatus


class VariantMatch(BaseModel):
    """A variant found by SKU or barcode, with the product it belongs to."""

    variant: VariantOut
    product: ProductSummary
    matched: Literal["sku", "barcode"]


class CollectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Title
    handle: Handle


class CollectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Title | None = None
    handle: Handle | None = None


class CollectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    handle: str
    title: str
    created_at: datetime
    updated_at: datetime


class ImportReport(BaseModel):
    rows: int
    products_created: int
    products_updated: int
    variants_created: int
    variants_updated: int
