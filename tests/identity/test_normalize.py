"""Normalisation: one matching key per identifier; bad values kept raw and flagged."""

from __future__ import annotations

import pytest

from seamline.identity import normalize


def test_email_is_trimmed_and_lower_cased() -> None:
    value = normalize.email("  Ann.Lee@Example.COM ")
    assert value == normalize.IdentifierValue(
        "email", "ann.lee@example.com", "  Ann.Lee@Example.COM ", True
    )


@pytest.mark.parametrize("raw", ["n/a", "ann@", "@example.com", "ann@example", "a b@example.com"])
def test_bad_email_is_kept_and_invalid(raw: str) -> None:
    value = normalize.email(raw)
    assert value is not None
    assert value.valid is False
    assert value.raw == raw


def test_phone_becomes_e164_with_the_region() -> None:
    assert normalize.phone("020 7946 0018", region="GB") == normalize.IdentifierValue(
        "phone", "+442079460018", "020 7946 0018", True
    )
    assert normalize.phone("+44 20 7946 0018", region=None).value == "+442079460018"  # type: ignore[union-attr]


def test_national_phone_without_region_is_invalid_not_dropped() -> None:
    value = normalize.phone(" 020 7946 0018", region=None)
    assert value == normalize.IdentifierValue("phone", "020 7946 0018", " 020 7946 0018", False)
    assert normalize.phone("call me", region="GB").valid is False  # type: ignore[union-attr]


def test_handles_carry_the_network_and_lose_the_at_sign() -> None:
    value = normalize.social_handle("Instagram", " @Ann.Lee ")
    assert value is not None
    assert (value.kind, value.value, value.valid) == ("social:instagram", "ann.lee", True)


def test_external_ids_are_per_system_and_keep_case() -> None:
    value = normalize.external_id("Shopify", " Cust-42 ")
    assert value is not None
    assert (value.kind, value.value) == ("external:shopify", "Cust-42")
    assert normalize.external_id("bad system!", "1") is None


def test_loyalty_card_ignores_grouping() -> None:
    assert normalize.loyalty_card("ab12-3456 78").value == "AB12345678"  # type: ignore[union-attr]


def test_opaque_ids_are_exact_and_objects_are_not_ids() -> None:
    assert normalize.opaque("user_id", 42).value == "42"  # type: ignore[union-attr]
    assert normalize.opaque("user_id", {"a": 1}) is None
    assert normalize.opaque("device_id", "") is None


def test_region_from_context_then_address_then_locale() -> None:
    assert normalize.region_of({"location": {"country": "fr"}}, {}) == "FR"
    assert normalize.region_of({"locale": "en-GB"}, {"address": {"country": "DE"}}) == "DE"
    assert normalize.region_of({"locale": "en-GB"}, {}) == "GB"
    assert normalize.region_of({"locale": "en"}, {}) is None
