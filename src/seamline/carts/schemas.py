"""Cart and saved-list API shapes. Inputs are strict: unknown fields — a client-sent price
among them — are refused with a field path (422), never silently ignored.

Prices are never inputs: every cart response is priced anew on the server (``quote.price``).
Every constraint the server enforces on a single field is written into the JSON Schema too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from babel import Locale
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from seamline.carts.models import MAX_LINE_QUANTITY
from seamline.catalog.schemas import Currency
from seamline.kit.schemas import NAME_PATTERN

CartStatus = Literal["open", "checking_out", "completed", "merged", "abandoned"]
Fulfilment = Literal["ship", "pickup"]

# Public ids (``crt_…``, ``chn_…``, ``var_…``) as they are written.
ID_PATTERN = r"^[a-z]{2,8}_[a-z0-9]{1,36}$"
# Client identifiers (a browser's anonymous id): printable, no controls, no NUL.
CLIENT_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
# A discount code as a customer types it: printable, at least one visible character.
CODE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
# A share code as a person reads it: letters and digits, any case, spaces or dashes.
SHARE_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 -]{2,14}$"
BARCODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"
POSTCODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 -]{0,10}[A-Za-z0-9]$"
PHONE_PATTERN = r"^\+?[0-9][0-9 ().-]{2,30}$"
# No control characters (PostgreSQL refuses NUL; the rest corrupt labels and logs).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
EMAIL_PATTERN = (
    r"^[^\s@\x00-\x1f\x7f-\x9f]{1,64}@[^\s@\x00-\x1f\x7f-\x9f]+\.[^\s@\x00-\x1f\x7f-\x9f]+$"
)

# ISO 3166-1 alpha-2 codes Babel knows, without its macro-regions and reserved codes.
_NOT_COUNTRIES = {
    "AC",
    "CP",
    "CQ",
    "DG",
    "EA",
    "EU",
    "EZ",
    "IC",
    "QO",
    "TA",
    "UN",
    "XA",
    "XB",
    "ZZ",
}
COUNTRIES = sorted(
    k
    for k in Locale("en").territories
    if isinstance(k, str) and len(k) == 2 and k.isalpha() and k not in _NOT_COUNTRIES
)

Quantity = Annotated[int, Field(ge=1, le=MAX_LINE_QUANTITY)]
PublicId = Annotated[str, Field(max_length=40, pattern=ID_PATTERN)]
ClientId = Annotated[str, Field(min_length=1, max_length=255, pattern=CLIENT_ID_PATTERN)]
Email = Annotated[str, Field(max_length=320, pattern=EMAIL_PATTERN)]
_COUNTRY_SET = frozenset(COUNTRIES)


def _known_country(code: str) -> str:
    if code not in _COUNTRY_SET:
        raise ValueError("not an ISO 3166-1 alpha-2 country code")
    return code


Country = Annotated[
    str,
    AfterValidator(_known_country),
    Field(
        json_schema_extra={"enum": COUNTRIES},
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166-1 alpha-2, upper case.",
    ),
]

_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _need_owner(anonymous_id: str | None, profile_id: str | None) -> None:
    if anonymous_id is None and profile_id is None:
        raise ValueError("give anonymous_id, profile_id or both")


# -- inputs ----------------------------------------------------------------------------------


class CartCreate(BaseModel):
    """A new cart. A publishable key may name only an ``anonymous_id``; ``profile_id`` (a
    recognised customer) may be set by secret keys (servers, staff)."""

    model_config = _STRICT

    channel_id: PublicId
    currency: Currency
    anonymous_id: ClientId | None = None
    profile_id: PublicId | None = None
    email: Email | None = None

    @model_validator(mode="after")
    def _owner(self) -> CartCreate:
        _need_owner(self.anonymous_id, self.profile_id)
        return self


class LineAdd(BaseModel):
    """Add a variant — by id, or by a scanned barcode (or SKU) — to ship or to pick up."""

    model_config = _STRICT

    variant_id: PublicId | None = None
    barcode: Annotated[str, Field(pattern=BARCODE_PATTERN)] | None = None
    quantity: Quantity = 1
    fulfilment: Fulfilment = "ship"
    pickup_location_id: PublicId | None = Field(
        default=None, description="Required with `fulfilment: pickup`, refused otherwise."
    )

    @model_validator(mode="after")
    def _consistent(self) -> LineAdd:
        if (self.variant_id is None) == (self.barcode is None):
            raise ValueError("give exactly one of variant_id and barcode")
        _fulfilment_consistent(self.fulfilment, self.pickup_location_id)
        return self


def _fulfilment_consistent(fulfilment: str | None, location_id: str | None) -> None:
    if fulfilment == "pickup" and location_id is None:
        raise ValueError("pickup needs pickup_location_id")
    if fulfilment == "ship" and location_id is not None:
        raise ValueError("pickup_location_id is only for pickup")


class LineUpdate(BaseModel):
    """Change a line's quantity and/or fulfilment; fields left out stay as they are."""

    model_config = _STRICT

    quantity: Quantity | None = None
    fulfilment: Fulfilment | None = None
    pickup_location_id: PublicId | None = None

    @model_validator(mode="after")
    def _consistent(self) -> LineUpdate:
        if self.fulfilment is not None:
            _fulfilment_consistent(self.fulfilment, self.pickup_location_id)
        elif self.pickup_location_id is not None:
            raise ValueError("pickup_location_id goes with fulfilment: pickup")
        return self


class CodeAdd(BaseModel):
    model_config = _STRICT

    code: Annotated[str, Field(min_length=1, max_length=64, pattern=CODE_PATTERN)]


class Address(BaseModel):
    """A postal address; any script is welcome, control characters are not."""

    model_config = _STRICT

    name: Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
    line1: Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
    line2: Annotated[str, Field(max_length=200, pattern=TEXT_PATTERN)] | None = None
    city: Annotated[str, Field(min_length=1, max_length=100, pattern=NAME_PATTERN)]
    region: Annotated[str, Field(max_length=100, pattern=TEXT_PATTERN)] | None = None
    postcode: (
        Annotated[str, Field(min_length=2, max_length=12, pattern=POSTCODE_PATTERN)] | None
    ) = None
    country: Country
    phone: Annotated[str, Field(pattern=PHONE_PATTERN)] | None = None


class ShippingSet(BaseModel):
    """Set the fields sent: ``null`` clears one, a field left out stays as it is."""

    model_config = _STRICT

    address: Address | None = None
    shipping_rate_id: PublicId | None = None
    email: Email | None = None


class MergeRequest(BaseModel):
    model_config = _STRICT

    source_cart_id: PublicId


class SavedListCreate(BaseModel):
    model_config = _STRICT

    name: Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
    anonymous_id: ClientId | None = None
    profile_id: PublicId | None = None
    channel_id: PublicId | None = None

    @model_validator(mode="after")
    def _owner(self) -> SavedListCreate:
        _need_owner(self.anonymous_id, self.profile_id)
        return self


class ItemAdd(BaseModel):
    """Add a variant by id, or by a scanned barcode (recorded as ``added_via: scan``)."""

    model_config = _STRICT

    variant_id: PublicId | None = None
    barcode: Annotated[str, Field(pattern=BARCODE_PATTERN)] | None = None
    quantity: Quantity = 1
    note: Annotated[str, Field(max_length=500, pattern=TEXT_PATTERN)] = ""

    @model_validator(mode="after")
    def _one_way(self) -> ItemAdd:
        if (self.variant_id is None) == (self.barcode is None):
            raise ValueError("give exactly one of variant_id and barcode")
        return self


class ItemUpdate(BaseModel):
    model_config = _STRICT

    quantity: Quantity | None = None
    note: Annotated[str, Field(max_length=500, pattern=TEXT_PATTERN)] | None = None


class MoveToCart(BaseModel):
    """Move an item (or ``quantity`` of it; the rest stays on the list) into a cart."""

    model_config = _STRICT

    cart_id: PublicId
    quantity: Quantity | None = Field(default=None, description="Default: the whole item.")
    fulfilment: Fulfilment = "ship"
    pickup_location_id: PublicId | None = None

    @model_validator(mode="after")
    def _consistent(self) -> MoveToCart:
        _fulfilment_consistent(self.fulfilment, self.pickup_location_id)
        return self


# -- outputs ---------------------------------------------------------------------------------


class LineDiscountOut(BaseModel):
    promotion_id: str
    amount: int


class CartLineOut(BaseModel):
    id: str
    variant_id: str
    sku: str
    title: str = Field(description="The product title, with the variant's title if it has one.")
    quantity: int
    fulfilment: Fulfilment
    pickup_location_id: str | None
    added_by: str | None
    priced: bool = Field(description="False when the line is left out of the quote (problems).")
    unit_price: int | None
    subtotal: int
    discount: int
    discounts: list[LineDiscountOut]
    tax: int
    total: int


class AppliedOut(BaseModel):
    promotion_id: str
    code: str | None
    kind: str
    discount: int
    shipping_discount: int


class RejectedOut(BaseModel):
    code: str
    reason: str = Field(
        description="unknown_code, not_started, expired, wrong_channel, not_your_code, "
        "not_applicable, min_subtotal_not_met, not_combinable or usage_limit_reached"
    )
    promotion_id: str | None


class TaxOut(BaseModel):
    name: str
    country: str
    region: str | None
    rate: int
    amount: int


class GroupOut(BaseModel):
    fulfilment_group: str
    pickup: bool
    pickup_location_id: str | None
    shipping_rate_id: str | None
    weight_grams: int
    shipping: int
    shipping_discount: int
    shipping_tax: int
    total: int


class QuoteOut(BaseModel):
    """Amounts in minor units of ``currency``; ``total`` reconciles exactly (pricing rules)."""

    currency: str
    prices_include_tax: bool
    subtotal: int
    discount_total: int
    shipping_total: int
    shipping_discount_total: int
    tax_total: int
    total: int
    applied: list[AppliedOut]
    rejected: list[RejectedOut]
    taxes: list[TaxOut]
    groups: list[GroupOut]


class ProblemOut(BaseModel):
    code: str
    detail: str
    line_id: str | None


class ChannelRef(BaseModel):
    id: str
    kind: str
    name: str


class CartOut(BaseModel):
    id: str
    share_code: str
    status: CartStatus
    channel: ChannelRef = Field(description="The channel the cart began on.")
    currency: str
    profile_id: str | None
    anonymous_id: str | None
    email: str | None
    shipping_address: dict[str, Any] | None
    shipping_rate_id: str | None
    codes: list[str]
    merged_into_id: str | None
    order_id: str | None
    version: int = Field(description="Bumped on every change; also the ETag.")
    updated_by: str | None = Field(description="API key id of the last change.")
    created_at: datetime
    updated_at: datetime
    lines: list[CartLineOut]
    quote: QuoteOut
    problems: list[ProblemOut]


class CartSummary(BaseModel):
    id: str
    share_code: str
    status: CartStatus
    channel_id: str
    currency: str
    profile_id: str | None
    anonymous_id: str | None
    email: str | None
    merged_into_id: str | None
    order_id: str | None
    version: int
    line_count: int
    item_count: int
    created_at: datetime
    updated_at: datetime


class ShippingOption(BaseModel):
    id: str
    name: str
    kind: str
    currency: str
    price: int = Field(description="For this cart's shipped lines, before promotions.")
    selected: bool


class ShippingOptions(BaseModel):
    destination_country: str | None
    weight_grams: int
    data: list[ShippingOption]


class SavedListItemOut(BaseModel):
    id: str
    variant_id: str
    sku: str
    title: str
    quantity: int
    note: str
    added_via: str
    added_at: datetime


class SavedListOut(BaseModel):
    id: str
    share_code: str
    name: str
    profile_id: str | None
    anonymous_id: str | None
    channel_id: str | None
    created_at: datetime
    updated_at: datetime
    items: list[SavedListItemOut]


class SavedListSummary(BaseModel):
    id: str
    share_code: str
    name: str
    profile_id: str | None
    anonymous_id: str | None
    channel_id: str | None
    item_count: int
    created_at: datetime
    updated_at: datetime


class MovedToCart(BaseModel):
    saved_list: SavedListOut
    cart: CartOut
