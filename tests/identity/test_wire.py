"""The per-call checks of wire.validate_call that need no server: storable text, nesting depth
and size, read from one pass of the JSON encoder (wire._check_shape)."""

from __future__ import annotations

from typing import Any

import pytest

from seamline.identity import wire

NUL = "contains a NUL character or an invalid Unicode escape"
DEEP = f"nested deeper than {wire.MAX_DEPTH} levels"
BIG = "event_too_large"


def _reason(properties: Any) -> str | None:
    try:
        wire.validate_call({"userId": "u1", "event": "x", "properties": properties}, "track")
    except ValueError as exc:
        return str(exc)
    return None


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        ({"a": "a\x00b"}, NUL),
        ({"a\x00": 1}, NUL),
        ({"a": "\\\x00"}, NUL),  # a backslash, then a NUL
        ({"a": "\\u0000"}, None),  # the six characters, not a NUL
        ({"a": "\\\\u0000"}, None),
        ({"a": "\ud800"}, NUL),  # a lone surrogate
        ({"\udfff": 1}, NUL),
        ({"a": "{[" * 100}, None),  # brackets inside strings are not nesting
        ({"a": '"\\"[[' * 50}, None),
        (_nested(wire.MAX_DEPTH - 1), None),  # the call itself is one level more
        (_nested(wire.MAX_DEPTH), DEEP),
        (_nested(5000), DEEP),  # deeper than the JSON encoder goes
        (_nested(5000, "\x00"), NUL),  # and the NUL is still named first
        ({"a": [[[]]] * 100}, None),  # many brackets, little depth
        (_nested(wire.MAX_DEPTH, "x" * 40_000), DEEP),  # depth before size
        ({"a": "\x00" + "x" * 40_000}, NUL),  # NUL before size
    ],
)
def test_calls_are_checked_for_storable_text_depth_then_size(
    properties: Any, reason: str | None
) -> None:
    assert _reason(properties) == reason


def test_size_is_counted_in_utf8_bytes_of_compact_json() -> None:
    # {"userId":"u1","event":"x","properties":{"a":"…"}} around the value.
    overhead = len('{"userId":"u1","event":"x","properties":{"a":""}}')
    fits = wire.EVENT_MAX_BYTES - overhead
    assert _reason({"a": "x" * fits}) is None
    assert (_reason({"a": "x" * (fits + 1)}) or "").startswith(BIG)
    assert _reason({"a": "é" * (fits // 2)}) is None  # two bytes each
    assert (_reason({"a": "é" * (fits // 2 + 1)}) or "").startswith(BIG)
