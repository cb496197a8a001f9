"""Small building blocks: ids, read-aloud codes, money, the clock."""

from __future__ import annotations

import base64
import gc
import time
import weakref
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from seamline.kit import clock, heap
from seamline.kit.clock import FrozenClock, ensure_utc
from seamline.kit.crypto import SecretBox
from seamline.kit.ids import (
    READ_ALOUD_ALPHABET,
    _b32_80,
    new_id,
    new_ids,
    new_secret,
    normalize_read_aloud,
    read_aloud_code,
)
from seamline.kit.money import Money
from seamline.kit.schemas import NAME_PATTERN


def test_ids_carry_their_prefix_and_sort_by_creation_time() -> None:
    first = new_id("chn")
    time.sleep(0.002)
    second = new_id("chn")
    assert first.startswith("chn_")
    assert len(first) == 4 + 26
    assert first < second
    assert len({new_id("x") for _ in range(10_000)}) == 10_000


def test_bulk_ids_are_shaped_and_ordered_like_single_ones() -> None:
    made = new_ids("IDN")
    before = new_id("idn")
    time.sleep(0.002)
    batch = [next(made) for _ in range(2_500)]  # across the thousand-id refills
    time.sleep(0.002)
    after = new_id("idn")
    assert all(i.startswith("idn_") and len(i) == 4 + 26 for i in batch)
    assert len(set(batch)) == len(batch)
    assert before < min(batch)
    assert max(batch) < after
    assert batch[0][:14] <= batch[-1][:14]  # the time part never goes back


@given(st.binary(min_size=10, max_size=10))
def test_the_random_part_is_crockford_base32_of_the_bytes(data: bytes) -> None:
    """16 digits, most significant first: RFC 4648 base32 mapped onto Crockford's alphabet."""
    rfc = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz")
    assert _b32_80(data) == base64.b32encode(data).translate(rfc).decode()
    assert int(
        _b32_80(data).translate(str.maketrans("abcdefghjkmnpqrstvwxyz", "ABCDEFGHIJKLMNOPQRSTUV")),
        32,
    ) == int.from_bytes(data, "big")


def test_secrets_are_long_and_unique() -> None:
    a, b = new_secret("sk"), new_secret("sk")
    assert a.startswith("sk_")
    assert len(a) >= 32
    assert a != b


def test_read_aloud_codes_avoid_look_alikes() -> None:
    for ch in "01OILSZB258U":
        assert ch not in READ_ALOUD_ALPHABET
    code = read_aloud_code()
    assert len(code) == 7
    assert code[3] == "-"
    assert all(c in READ_ALOUD_ALPHABET for c in code.replace("-", ""))


@given(st.text(alphabet=READ_ALOUD_ALPHABET, min_size=6, max_size=6))
def test_read_aloud_codes_survive_sloppy_typing(raw: str) -> None:
    canonical = f"{raw[:3]}-{raw[3:]}"
    assert normalize_read_aloud(raw.lower()) == canonical
    assert normalize_read_aloud(f" {raw[:3]} {raw[3:]} ") == canonical


def test_money_is_integer_minor_units() -> None:
    assert Money(1999, "EUR") + Money(1, "EUR") == Money(2000, "EUR")
    assert Money(500, "USD") - Money(125, "USD") == Money(375, "USD")
    with pytest.raises(TypeError):
        Money(19.99, "EUR")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mix"):
        Money(1, "EUR") + Money(1, "USD")
    with pytest.raises(ValueError, match="ISO 4217"):
        Money(1, "euro")


def test_money_formats_by_currency_precision() -> None:
    assert Money(123456, "USD").format("en_US") == "$1,234.56"
    assert Money(1234, "JPY").format("ja_JP") == "￥1,234"
    assert Money(-250, "EUR").format("de_DE") == "-2,50\xa0€"


def test_the_clock_can_be_frozen_and_advanced() -> None:
    frozen = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    clock.set_clock(frozen)
    try:
        assert clock.now() == datetime(2026, 1, 1, tzinfo=UTC)
        frozen.advance(hours=2)
        assert clock.now() == datetime(2026, 1, 1, 2, tzinfo=UTC)
    finally:
        clock.set_clock(None)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_ensure_utc_refuses_naive_times() -> None:
    paris = datetime(2026, 6, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert ensure_utc(paris) == datetime(2026, 6, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        ensure_utc(datetime(2026, 6, 1))


def test_secret_box_round_trips_and_detects_the_wrong_key() -> None:
    from cryptography.fernet import InvalidToken

    sealed = SecretBox("key-one").seal("whsec_abc")
    assert "whsec_abc" not in sealed
    assert SecretBox("key-one").open(sealed) == "whsec_abc"
    with pytest.raises(InvalidToken):
        SecretBox("key-two").open(sealed)


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("Ann", True),
        ("  Zoë  ", True),
        ("名", True),
        ("a\u200b", True),
        ("", False),
        ("   ", False),
        ("\u200b", False),
        ("\u200b\u200d \u00ad", False),
        ("\ufeff", False),
        ("\u3000\u2060", False),
        ("tab\there", False),
        ("nul\x00", False),
    ],
)
def test_display_names_need_a_visible_character_and_no_control_characters(
    name: str, accepted: bool
) -> None:
    """A name made only of spaces, zero-width or format characters would look empty."""

    class Named(BaseModel):
        name: str = Field(min_length=1, pattern=NAME_PATTERN)

    try:
        Named(name=name)
    except ValidationError:
        assert not accepted
    else:
        assert accepted


def test_settling_the_heap_freezes_survivors_and_still_collects_new_garbage() -> None:
    """``heap.settle`` (serve and worker, after start-up): what is alive is frozen and left out
    of later collections; garbage made afterwards is collected as before."""

    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    def cycle() -> weakref.ref[Node]:
        a, b = Node(), Node()
        a.other, b.other = b, a  # reference counting alone never frees a cycle
        return weakref.ref(a)

    alive = Node()
    before = cycle()  # garbage made before the freeze: settle collects it first
    try:
        frozen = heap.settle()
        assert before() is None
        assert frozen == gc.get_freeze_count() > 0
        # Frozen: in no generation a collection walks.
        assert not any(o is alive for g in range(3) for o in gc.get_objects(generation=g))
        after = cycle()
        assert after() is not None
        gc.collect()
        assert after() is None  # the collector still works on what came after
        assert gc.get_freeze_count() == frozen  # the frozen ones stay frozen
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
