"""Webhook signatures: ``Seamline-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>``."""

from __future__ import annotations

import hashlib
import hmac
import time


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
    which stops replays of captured deliveries.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for item in signature_header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("malformed signature header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance window")
    expected = compute(body, secret, timestamp)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("no signature matches")
    return timestamp
