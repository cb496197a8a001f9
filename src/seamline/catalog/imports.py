"""CSV import and export of the catalog: one row per variant, product columns repeated.

A file is imported all or nothing: every row is validated first and any bad row refuses the
whole file with a report of line and column; only then are rows written, in the caller's
transaction, so a failure while writing also leaves nothing behind. See docs/catalog.md.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.catalog import service
from seamline.catalog.codes import gtin_forms
from seamline.catalog.models import Price, Product, Variant
from seamline.catalog.schemas import (
    ImportReport,
    PriceIn,
    ProductCreate,
    ProductUpdate,
    VariantCreate,
    VariantUpdate,
)
from seamline.kit.errors import FieldError, Unprocessable

PRODUCT_COLUMNS = ("handle", "title", "status", "description", "tags", "media")
VARIANT_COLUMNS = ("sku", "barcode", "variant_title", "weight_grams")
FIXED_COLUMNS = PRODUCT_COLUMNS + VARIANT_COLUMNS
OPTION, PRICE, COMPARE_AT = "option:", "price:", "compare_at:"
LIST_SEPARATOR = "|"
MAX_REPORTED_ERRORS = 100
MAX_ROWS = 200_000
Progress = Callable[[int], None]


@dataclass
class Row:
    line: int
    product: ProductUpdate
    variant: VariantCreate


@dataclass
class Parsed:
    rows: list[Row] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)

    def fail(self, line: int, column: str, message: str, code: str = "invalid") -> None:
        self.errors.append(FieldError(f"line.{line}.{column}", message, code))


def _split(value: str) -> list[str] | None:
    parts = [p.strip() for p in value.split(LIST_SEPARATOR) if p.strip()]
    return parts or None


def _column_of(loc: tuple[int | str, ...], *, variant: bool) -> str:
    if not loc:
        return "row"
    head = str(loc[0])
    if variant and head == "prices" and len(loc) >= 3:
        return f"{COMPARE_AT if loc[2] == 'compare_at' else PRICE}{loc[1]}"
    if variant and head == "prices" and len(loc) == 2:
        return f"{PRICE}{loc[1]}"
    if variant and head == "options" and len(loc) >= 2:
        return f"{OPTION}{loc[1]}"
    if variant and head == "title":
        return "variant_title"
    return head


def _check_header(header: list[str], parsed: Parsed) -> None:
    for name in ("handle", "title", "sku"):
        if name not in header:
            parsed.fail(1, name, "required column is missing", "missing_column")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            parsed.fail(1, name, "column appears twice", "duplicate_column")
        seen.add(name)
        if name not in FIXED_COLUMNS and not name.startswith((OPTION, PRICE, COMPARE_AT)):
            parsed.fail(1, name, "unknown column", "unknown_column")


def _records(text: str, parsed: Parsed) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader, [])]
        _check_header(header, parsed)
        if parsed.errors:
            return
        start = reader.line_num + 1
        for values in reader:
            line, start = start, reader.line_num + 1
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                parsed.fail(line, "row", f"{len(values)} cells, header has {len(header)}")
                continue
            yield line, dict(zip(header, values, strict=True))
    except csv.Error as exc:
        parsed.fail(reader.line_num, "row", f"unreadable CSV: {exc}", "unreadable")


def _row(line: int, cells: dict[str, str], parsed: Parsed) -> Row | None:
    get = {k: v.strip() for k, v in cells.items()}
    product_data: dict[str, Any] = {
        "title": get.get("title") or None,
        "handle": get.get("handle") or None,
        "status": get.get("status") or None,
        "description": cells.get("description") or None,
        "tags": _split(get.get("tags", "")),
        "media": _split(get.get("media", "")),
    }
    prices: dict[str, dict[str, str]] = {}
    options: dict[str, str] = {}
    for name, value in get.items():
        if value and name.startswith(OPTION):
            options[name[len(OPTION) :]] = value
        elif value and name.startswith(PRICE):
            prices.setdefault(name[len(PRICE) :], {})["amount"] = value
        elif value and name.startswith(COMPARE_AT):
            prices.setdefault(name[len(COMPARE_AT) :], {})["compare_at"] = value
    variant_data: dict[str, Any] = {
        "sku": get.get("sku", ""),
        "barcode": get.get("barcode") or None,
        "title": get.get("variant_title") or None,
        "weight_grams": get.get("weight_grams") or None,
        "options": options,
        "prices": prices,
    }
    ok = True
    for column in ("handle", "title", "sku"):
        if not get.get(column):
            parsed.fail(line, column, "required", "missing")
            ok = False
    product = variant = None
    try:
        product = ProductUpdate.model_validate(product_data)
    except ValidationError as exc:
        ok = False
        for e in exc.errors():
            parsed.fail(line, _column_of(e["loc"], variant=False), e["msg"], e["type"])
    try:
        variant = VariantCreate.model_validate(variant_data)
    except ValidationError as exc:
        ok = False
        for e in exc.errors():
            parsed.fail(line, _column_of(e["loc"], variant=True), e["msg"], e["type"])
    if not ok or product is None or variant is None:
        return None
    return Row(line, product, variant)


def parse(text: str) -> Parsed:
    """Validate a whole file without touching the database."""
    parsed = Parsed()
    first_line: dict[str, tuple[int, ProductUpdate]] = {}
    skus: dict[str, int] = {}
    barcodes: dict[str, int] = {}
    for line, cells in _records(text, parsed):
        if len(parsed.rows) >= MAX_ROWS:
            parsed.fail(line, "row", f"a file holds at most {MAX_ROWS} rows", "too_many_rows")
            break
        row = _row(line, cells, parsed)
        if row is None:
            continue
        handle = row.product.handle or ""
        if handle in first_line:
            earlier_line, earlier = first_line[handle]
            for name in ("title", "status", "description", "tags", "media"):
                value = getattr(row.product, name)
                if value is not None and value != getattr(earlier, name):
                    parsed.fail(line, name, f"differs from line {earlier_line} (same handle)")
        else:
            first_line[handle] = (line, row.product)
        if row.variant.sku in skus:
            parsed.fail(line, "sku", f"repeats line {skus[row.variant.sku]}", "duplicate")
        skus.setdefault(row.variant.sku, line)
        if row.variant.barcode:
            # The same GTIN at another length (a UPC-A written as EAN-13) is the same barcode.
            forms = gtin_forms(row.variant.barcode)
            first = next((barcodes[f] for f in forms if f in barcodes), None)
            if first is not None:
                parsed.fail(line, "barcode", f"repeats line {first}", "duplicate")
            for form in forms:
                barcodes.setdefault(form, line)
        parsed.rows.append(row)
    return parsed


def _check_against_database(session: Session, parsed: Parsed) -> None:
    """SKUs may only move onto the product of the same handle; barcodes must be free."""
    by_sku: dict[str, tuple[str, str | None]] = {}
    skus = [r.variant.sku for r in parsed.rows]
    for chunk in range(0, len(skus), 500):
        for sku, handle, barcode in session.execute(
            select(Variant.sku, Product.handle, Variant.barcode)
            .join(Product, Product.id == Variant.product_id)
            .where(Variant.sku.in_(skus[chunk : chunk + 500]))
        ):
            by_sku[sku] = (handle, barcode)
    codes = [f for r in parsed.rows if r.variant.barcode for f in gtin_forms(r.variant.barcode)]
    holders: dict[str, str] = {}
    for chunk in range(0, len(codes), 500):
        for barcode, sku in session.execute(
            select(Variant.barcode, Variant.sku).where(
                Variant.barcode.in_(codes[chunk : chunk + 500])
            )
        ):
            holders[str(barcode)] = sku
    for row in parsed.rows:
        existing = by_sku.get(row.variant.sku)
        if existing and existing[0] != row.product.handle:
            parsed.fail(row.line, "sku", f"belongs to product {existing[0]!r}", "sku_taken")
        code = row.variant.barcode
        others = (
            [
                holders[f]
                for f in gtin_forms(code or "")
                if holders.get(f, row.variant.sku) != row.variant.sku
            ]
            if code
            else []
        )
        if others:
            parsed.fail(row.line, "barcode", f"held by SKU {others[0]!r}", "barcode_taken")


def refuse(parsed: Parsed) -> Unprocessable:
    shown = parsed.errors[:MAX_REPORTED_ERRORS]
    return Unprocessable(
        f"the CSV has {len(parsed.errors)} problem(s); nothing was imported",
        code="csv_invalid",
        errors=shown,
    )


def import_csv(session: Session, text: str, *, progress: Progress | None = None) -> ImportReport:
    """Create or update products (by handle) and variants (by SKU) from a CSV file: all rows or
    none. Prices are set for the currencies present; other currencies stay as they are."""
    parsed = parse(text)
    if not parsed.errors:
        _check_against_database(session, parsed)
    if parsed.errors:
        raise refuse(parsed)
    report = ImportReport(
        rows=len(parsed.rows),
        products_created=0,
        products_updated=0,
        variants_created=0,
        variants_updated=0,
    )
    groups: dict[str, list[Row]] = {}
    for row in parsed.rows:
        groups.setdefault(row.product.handle or "", []).append(row)
    for handle, rows in groups.items():
        _import_product(session, handle, rows, report)
        if progress:
            progress(len(rows))
    return report


def _import_product(session: Session, handle: str, rows: list[Row], report: ImportReport) -> None:
    first = rows[0].product
    product = session.scalars(select(Product).where(Product.handle == handle)).one_or_none()
    if product is None:
        data = first.model_dump(exclude_none=True)
        service.new_product(session, ProductCreate(**data, variants=[r.variant for r in rows]))
        report.products_created += 1
        report.variants_created += len(rows)
        return
    if service.change_product(session, product, first):
        report.products_updated += 1
    for row in rows:
        variant = session.scalars(
            select(Variant).where(Variant.sku == row.variant.sku)
        ).one_or_none()
        if variant is None:
            service.new_variant(session, product, row.variant)
            report.variants_created += 1
            continue
        fields = row.variant.model_dump(exclude={"prices"})
        changed = service.change_variant(session, variant, VariantUpdate(**fields))
        prices: dict[str, PriceIn | None] = dict(row.variant.prices)
        changed = service.apply_prices(session, variant, prices) or changed
        report.variants_updated += int(changed)


# -- export ----------------------------------------------------------------------------------


def export_csv(
    session: Session, out: TextIO, *, caller: Caller | None = None, page: int = 500
) -> int:
    """Write the catalog (or, for a storefront key, what it may see) in the import format.
    Returns the number of rows written."""
    options = sorted(
        {name for opts in session.scalars(select(Variant.options)) for name in (opts or {})}
    )
    currencies = sorted(set(session.scalars(select(Price.currency).distinct())))
    header = [
        *FIXED_COLUMNS,
        *(OPTION + o for o in options),
        *(f"{PRICE}{c}" for c in currencies),
        *(f"{COMPARE_AT}{c}" for c in currencies),
    ]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    written = 0
    cursor: str | None = None
    while True:
        products, cursor = service.list_products(session, caller=caller, cursor=cursor, limit=page)
        for p in products:
            for v in p.variants:
                writer.writerow(
                    [
                        p.handle,
                        p.title,
                        p.status,
                        p.description,
                        LIST_SEPARATOR.join(p.tags),
                        LIST_SEPARATOR.join(p.media),
                        v.sku,
                        v.barcode or "",
                        v.title,
                        "" if v.weight_grams is None else v.weight_grams,
                        *(v.options.get(o, "") for o in options),
                        *(v.prices[c].amount if c in v.prices else "" for c in currencies),
                        *(
                            v.prices[c].compare_at
                            if c in v.prices and v.prices[c].compare_at is not None
                            else ""
                            for c in currencies
                        ),
                    ]
                )
                written += 1
        if cursor is None:
            return written
