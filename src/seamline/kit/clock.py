"""The one source of "now": timezone-aware UTC, replaceable so tests can jump ahead."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


def _system_now() -> datetime:
    return datetime.now(UTC)


_lock = threading.Lock()
_now: Callable[[], datetime] = _system_now


def now() -> datetime:
    """Current time, timezone-aware UTC."""
    return _now()


def set_clock(fn: Callable[[], datetime] | None) -> None:
    """Install a clock function (``None`` restores the system clock)."""
    global _now
    with _lock:
        _now = fn or _system_now


class FrozenClock:
    """A settable clock for tests: ``clock.advance(minutes=5)``."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or _system_now()

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; naive values are refused because their zone is unknown."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: a timezone is required")
    return value.astimezone(UTC)
