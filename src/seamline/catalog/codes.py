"""Pure rules about codes and text: GTIN check digits, equivalent GTIN forms, search text, slugs."""

from __future__ import annotations

import re
import unicodedata

GTIN_LENGTHS = (8, 12, 13, 14)


def is_gtin_shaped(code: str) -> bool:
    """All digits and 8, 12, 13 or 14 long: such a code is a GTIN and must carry a valid
    check digit. Any other code (Code 128, internal labels) is stored as a plain code."""
    return code.isascii() and code.isdigit() and len(code) in GTIN_LENGTHS


def gtin_check_digit_ok(code: str) -> bool:
    """GS1 mod-10: weights 3,1,3,… from the rightmost digit before the check digit."""
    digits = [int(c) for c in code]
    body, check = digits[:-1], digits[-1]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def barcode_problem(code: str) -> str | None:
    if is_gtin_shaped(code) and not gtin_check_digit_ok(code):
        return f"GTIN-{len(code)} check digit is wrong"
    return None


def gtin_forms(code: str) -> list[str]:
    """The code plus the same GTIN written at the other lengths (a UPC-A scanned as EAN-13
    gains a leading zero): lookups try them all, so any scanner finds the variant."""
    if not is_gtin_shaped(code):
        return [code]
    core = code.lstrip("0")
    forms = [code]
    for length in GTIN_LENGTHS:
        if len(core) <= length:
            padded = core.rjust(length, "0")
            if padded not in forms and length != 8:  # GTIN-8 never pads into longer forms
                forms.append(padded)
    return forms


def search_text(*parts: str) -> str:
    """Lower-case, accent-free, single-spaced text: what name search compares against."""
    joined = " ".join(p for p in parts if p)
    return fold(joined)[:1200]


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str, max_length: int = 100) -> str:
    slug = _NOT_SLUG.sub("-", fold(text)).strip("-")
    return slug[:max_length].strip("-")
