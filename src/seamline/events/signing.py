"""Webhook signatures: ``Seamline-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>``."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

# A v1 signature is a lower-case hex SHA-256 digest; anything else is not a candidate.
_V1 = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match."""


def compute(body: bytes, secret: str, timestamp: int) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def header(body: bytes, secrets: list[str], timestamp: int) -> str:
    """One ``v1`` per active secret, so receivers keep working while a secret is rotated."""
    parts = [f"t={timestamp}"] + [f"v1={compute(body, s, timestamp)}" for s in secrets]
    return ",".join(parts)


def verify(
    body: bytes,
    signature_header: str,
    secret: str,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> int:
    """Check a delivery the way a receiver should; returns the signed timestamp.

    Compares in constant time and refuses timestamps older (or newer) than ``tolerance`` seconds,
    which stops replays of captured deliveries. Unknown schemes (``v0=…``) are ignored.
    """
    timestamp: int | None = None
    candidates: list[bytes] = []
    for item in (signature_header or "").split(","):
        key, _, value = item.strip().partition("=")
        # ASCII only: str.isdigit() would accept other scripts' digits, and compare_digest
        # raises TypeError (not SignatureError) on non-ASCII text.
        if key == "t" and _TIMESTAMP.fullmatch(value):
            timestamp = int(value)
        elif key == "v1" and _V1.fullmatch(value):
            candidates.append(value.encode("ascii"))
    if timestamp is None or not candidates:
        raise SignatureError("malformed signature header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance window")
    expected = compute(body, secret, timestamp).encode("ascii")
    # Check every candidate (no early exit) so timing does not reveal which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("no signature matches")
    return timestamp
