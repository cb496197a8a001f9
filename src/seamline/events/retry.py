"""Retry schedules: when to try a failed delivery again, and when to give up (dead letter)."""

from __future__ import annotations

from datetime import timedelta

HANDLER_MAX_ATTEMPTS = 10

# Delay after the n-th failed webhook attempt; the sum is about three days, then the endpoint
# is disabled (Stripe-like). Index 0 is the delay after the first failure.
WEBHOOK_SCHEDULE = (
    timedelta(seconds=30),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
    timedelta(hours=8),
    timedelta(hours=12),
    timedelta(hours=24),
    timedelta(hours=24),
)


def handler_delay(attempts: int) -> timedelta | None:
    """Exponential backoff for in-process handlers: 2s, 4s, 8s … capped at 1 h; dead after 10."""
    if attempts >= HANDLER_MAX_ATTEMPTS:
        return None
    return timedelta(seconds=min(2**attempts, 3600))


def webhook_delay(attempts: int) -> timedelta | None:
    """The webhook schedule above; ``None`` once it is exhausted (about three days)."""
    if attempts > len(WEBHOOK_SCHEDULE):
        return None
    return WEBHOOK_SCHEDULE[attempts - 1]


def stream_delay(attempts: int) -> timedelta | None:
    """The stream never gives up: an outage only delays events (capped at 5 minutes)."""
    return timedelta(seconds=min(2**attempts, 300))
