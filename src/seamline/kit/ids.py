"""Public ids with readable prefixes, secrets, and codes people read aloud."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

# Crockford's base32: no I, L, O, U; sortable when fixed-width.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Codes read aloud over a phone or a counter: no 0/O, 1/I/L, 2/Z, 5/S, 8/B look-alikes.
READ_ALOUD_ALPHABET = "34679ACDEFGHJKMNPQRTVWXY"


# Every 10-bit value as its two lower-case Crockford digits: 80 random bits are 8 lookups.
_PAIRS = [_CROCKFORD[n >> 5].lower() + _CROCKFORD[n & 31].lower() for n in range(1024)]
_millis_text: tuple[int, str] = (-1, "")


def _b32_80(data: bytes) -> str:
    """10 bytes as 16 lower-case Crockford base32 digits, most significant first (what
    ``base64.b32encode`` mapped onto Crockford's alphabet gives, in a third of the time)."""
    n = int.from_bytes(data, "big")
    return (
        _PAIRS[n >> 70]
        + _PAIRS[(n >> 60) & 1023]
        + _PAIRS[(n >> 50) & 1023]
        + _PAIRS[(n >> 40) & 1023]
        + _PAIRS[(n >> 30) & 1023]
        + _PAIRS[(n >> 20) & 1023]
        + _PAIRS[(n >> 10) & 1023]
        + _PAIRS[n & 1023]
    )


def _b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, rem = divmod(value, 32)
        out.append(_CROCKFORD[rem])
    return "".join(reversed(out))


def _now_text() -> str:
    """The current millisecond as 10 Crockford digits (cached while the millisecond lasts)."""
    global _millis_text
    millis = time.time_ns() // 1_000_000
    if _millis_text[0] != millis:
        _millis_text = (millis, _b32(millis, 10).lower())
    return _millis_text[1]


def new_id(prefix: str) -> str:
    """``prefix_`` + a ULID-shaped value: 48 bits of milliseconds then 80 random bits.

    Ids sort by creation time, which keeps B-tree inserts local and makes cursors cheap.
    """
    # 80 random bits are exactly 16 base32 digits, most significant first, as _b32 writes them.
    return f"{prefix.lower()}_{_now_text()}{_b32_80(secrets.token_bytes(10))}"


def new_ids(prefix: str) -> Iterator[str]:
    """``new_id(prefix)`` again and again, for bulk writers: the randomness is drawn from the
    operating system a thousand ids at a time instead of once per id."""
    head = f"{prefix.lower()}_"
    while True:
        randomness = secrets.token_bytes(10 * 1000)
        for start in range(0, len(randomness), 10):
            yield head + _now_text() + _b32_80(randomness[start : start + 10])


def new_secret(prefix: str, nbytes: int = 24) -> str:
    """A high-entropy secret such as an API key: ``sk_`` + url-safe random text."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def read_aloud_code(groups: int = 2, size: int = 3) -> str:
    """A short code such as ``K7Q-M9P`` that survives being read aloud."""
    parts = [
        "".join(secrets.choice(READ_ALOUD_ALPHABET) for _ in range(size)) for _ in range(groups)
    ]
    return "-".join(parts)


def normalize_read_aloud(code: str) -> str:
    """Accept what a person typed: any case, spaces or dashes; regroup into canonical form."""
    cleaned = "".join(ch for ch in code.upper() if ch.isalnum())
    return "-".join(cleaned[i : i + 3] for i in range(0, len(cleaned), 3))
