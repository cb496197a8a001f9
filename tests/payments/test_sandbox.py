"""The ``test`` provider: every magic token, the stateless follow-ups and the signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest

from seamline.kit.clock import FrozenClock
from seamline.payments.providers import (
    AuthorizeRequest,
    CaptureExceedsAuthorization,
    CaptureRequest,
    CardNumberRefused,
    RefundExceedsCapture,
    RefundRequest,
    UnknownPaymentReference,
    UnknownPaymentToken,
    VoidRequest,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from seamline.payments.sandbox import SIGNATURE_HEADER, SandboxProvider

SECRET = "whsec_sandbox_secret"
REFERENCE = re.compile(r"tpi_[0-9a-z]{26}")


@pytest.fixture
def sandbox() -> SandboxProvider:
    return SandboxProvider(SECRET)


def test_success_captures_or_authorizes(sandbox: SandboxProvider) -> None:
    request = AuthorizeRequest(
        amount=4999, currency="USD", token="tok_test_success", idempotency_key="a"
    )
    captured = sandbox.authorize(request)
    assert captured.status == "captured"
    assert captured.succeeded
    assert captured.amount == 4999
    assert captured.currency == "USD"
    assert captured.decline_code is None
    assert captured.provider == "test"
    assert captured.provider_reference is not None
    assert REFERENCE.fullmatch(captured.provider_reference)

    held = sandbox.authorize(
        AuthorizeRequest(
            amount=4999,
            currency="USD",
            token="tok_test_success",
            idempotency_key="b",
            capture=False,
        )
    )
    assert held.status == "authorized"
    assert held.provider_reference != captured.provider_reference


@pytest.mark.parametrize(
    ("token", "status", "code", "retryable"),
    [
        ("tok_test_decline", "declined", "card_declined", False),
        ("tok_test_insufficient_funds", "declined", "insufficient_funds", False),
        ("tok_test_processing_error", "failed", "processing_error", True),
    ],
)
def test_unsuccessful_tokens(
    sandbox: SandboxProvider, token: str, status: str, code: str, retryable: bool
) -> None:
    result = sandbox.authorize(
        AuthorizeRequest(amount=4999, currency="USD", token=token, idempotency_key="k")
    )
    assert result.status == status
    assert result.decline_code == code
    assert result.retryable is retryable
    assert not result.succeeded
    assert result.message  # something the shopper can be shown


def test_async_token_is_processing_until_the_webhook(sandbox: SandboxProvider) -> None:
    result = sandbox.authorize(
        AuthorizeRequest(amount=4999, currency="USD", token="tok_test_async", idempotency_key="k")
    )
    assert result.status == "processing"
    assert result.pending
    assert result.provider_reference is not None


def test_unknown_token_and_card_number(sandbox: SandboxProvider) -> None:
    with pytest.raises(UnknownPaymentToken) as caught:
        sandbox.authorize(
            AuthorizeRequest(amount=1, currency="USD", token="tok_visa", idempotency_key="k")
        )
    assert caught.value.code == "unknown_payment_token"
    assert "tok_test_success" in caught.value.extra["known_tokens"]
    with pytest.raises(CardNumberRefused):
        sandbox.authorize(
            AuthorizeRequest(
                amount=1, currency="USD", token="4242 4242 4242 4242", idempotency_key="k"
            )
        )


def test_retrying_an_idempotency_key_returns_the_same_payment(sandbox: SandboxProvider) -> None:
    def reference(key: str) -> str | None:
        return sandbox.authorize(
            AuthorizeRequest(
                amount=1, currency="USD", token="tok_test_success", idempotency_key=key
            )
        ).provider_reference

    assert reference("k1") == reference("k1") != reference("k2")


# -- capture, void, refund need no memory ------------------------------------------------------
def test_follow_ups_work_from_another_instance(sandbox: SandboxProvider) -> None:
    held = sandbox.authorize(
        AuthorizeRequest(
            amount=4999,
            currency="USD",
            token="tok_test_success",
            idempotency_key="k",
            capture=False,
        )
    )
    assert held.provider_reference is not None
    other_process = SandboxProvider(SECRET)
    captured = other_process.capture(
        CaptureRequest(held.provider_reference, 3000, "USD", 4999, idempotency_key="cap")
    )
    assert (captured.status, captured.amount) == ("captured", 3000)
    refund = other_process.refund(
        RefundRequest(
            provider_reference=held.provider_reference,
            amount=1000,
            currency="USD",
            captured_amount=3000,
            idempotency_key="ret",
        )
    )
    assert refund.status == "succeeded"
    assert refund.amount == 1000
    assert refund.provider_reference is not None
    assert refund.provider_reference.startswith("tre_")
    voided = other_process.void(VoidRequest(held.provider_reference, 4999, "USD", "void"))
    assert voided.status == "voided"


def test_over_capture_and_over_refund_are_refused(sandbox: SandboxProvider) -> None:
    reference = "tpi_" + "0" * 26
    with pytest.raises(CaptureExceedsAuthorization):
        sandbox.capture(CaptureRequest(reference, 5000, "USD", 4999, idempotency_key="c"))
    with pytest.raises(RefundExceedsCapture) as caught:
        sandbox.refund(
            RefundRequest(
                provider_reference=reference,
                amount=2000,
                currency="USD",
                captured_amount=3000,
                refunded_amount=1500,
                idempotency_key="r",
            )
        )
    assert caught.value.code == "refund_exceeds_captured"
    assert caught.value.extra == {"refundable_amount": 1500}


@pytest.mark.parametrize(
    "reference", ["pi_3SNq4tL8kF4tYp1a0kHq2ZbA", "tpi_short", "tpi_" + "I" * 26]
)
def test_malformed_references_are_not_found(sandbox: SandboxProvider, reference: str) -> None:
    with pytest.raises(UnknownPaymentReference):
        sandbox.capture(CaptureRequest(reference, 1, "USD", 1, idempotency_key="c"))


# -- asynchronous confirmation by webhook ------------------------------------------------------
def async_payment(sandbox: SandboxProvider) -> str:
    result = sandbox.authorize(
        AuthorizeRequest(amount=4999, currency="USD", token="tok_test_async", idempotency_key="k")
    )
    assert result.provider_reference is not None
    return result.provider_reference


def test_async_payment_is_confirmed_by_a_signed_webhook(
    sandbox: SandboxProvider, clock: FrozenClock
) -> None:
    reference = async_payment(sandbox)
    body, headers = sandbox.confirmation_webhook(reference, amount=4999, currency="USD")
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", headers[SIGNATURE_HEADER])

    event = sandbox.parse_webhook(body, headers)
    assert event.provider == "test"
    assert event.type == "payment.captured"
    assert event.status == "captured"
    assert event.provider_reference == reference
    assert (event.amount, event.currency) == (4999, "USD")
    assert event.event_id.startswith("tev_")
    assert event.occurred_at == clock.current.replace(microsecond=0)


def test_async_decline_and_authorization_webhooks(
    sandbox: SandboxProvider, clock: FrozenClock
) -> None:
    reference = async_payment(sandbox)
    body, headers = sandbox.confirmation_webhook(
        reference,
        amount=4999,
        currency="USD",
        outcome="declined",
        decline_code="insufficient_funds",
    )
    failed = sandbox.parse_webhook(body, headers)
    assert (failed.type, failed.status, failed.decline_code) == (
        "payment.failed",
        "declined",
        "insufficient_funds",
    )
    body, headers = sandbox.confirmation_webhook(
        reference, amount=4999, currency="USD", outcome="authorized"
    )
    held = sandbox.parse_webhook(body, headers)
    assert (held.type, held.status) == ("payment.authorized", "authorized")
    assert held.event_id != failed.event_id


def test_a_replayed_webhook_has_the_same_event_id(
    sandbox: SandboxProvider, clock: FrozenClock
) -> None:
    reference = async_payment(sandbox)
    body, headers = sandbox.confirmation_webhook(reference, amount=4999, currency="USD")
    first = sandbox.parse_webhook(body, headers)
    clock.advance(seconds=30)
    assert sandbox.parse_webhook(body, headers).event_id == first.event_id  # the same delivery
    # A redelivery, signed afresh a minute later, is still the same event.
    clock.advance(minutes=1)
    body2, headers2 = sandbox.confirmation_webhook(reference, amount=4999, currency="USD")
    assert headers2 != headers
    assert sandbox.parse_webhook(body2, headers2).event_id == first.event_id


def test_header_lookup_ignores_case(sandbox: SandboxProvider, clock: FrozenClock) -> None:
    body, headers = sandbox.confirmation_webhook(async_payment(sandbox), amount=1, currency="USD")
    lower = {k.lower(): v for k, v in headers.items()}
    assert sandbox.parse_webhook(body, lower).type == "payment.captured"


def test_expired_and_future_signatures_are_rejected(
    sandbox: SandboxProvider, clock: FrozenClock
) -> None:
    body, headers = sandbox.confirmation_webhook(async_payment(sandbox), amount=1, currency="USD")
    clock.advance(seconds=299)
    sandbox.parse_webhook(body, headers)  # still inside the 5-minute window
    clock.advance(seconds=2)
    with pytest.raises(WebhookSignatureInvalid, match="tolerance") as caught:
        sandbox.parse_webhook(body, headers)
    assert caught.value.status == 401

    future = int(clock.current.timestamp()) + 600
    body, headers = sandbox.confirmation_webhook(
        async_payment(sandbox), amount=1, currency="USD", timestamp=future
    )
    with pytest.raises(WebhookSignatureInvalid):
        sandbox.parse_webhook(body, headers)


def test_forged_and_tampered_webhooks_are_rejected(
    sandbox: SandboxProvider, clock: FrozenClock
) -> None:
    reference = async_payment(sandbox)
    body, headers = sandbox.confirmation_webhook(reference, amount=4999, currency="USD")

    # Signed with another secret.
    forger = SandboxProvider("whsec_attacker")
    forged_body, forged_headers = forger.confirmation_webhook(
        reference, amount=4999, currency="USD"
    )
    with pytest.raises(WebhookSignatureInvalid, match="no signature matches"):
        sandbox.parse_webhook(forged_body, forged_headers)

    # The body changed after signing (amount raised).
    tampered = body.replace(b'"amount":4999', b'"amount":1')
    assert tampered != body
    with pytest.raises(WebhookSignatureInvalid):
        sandbox.parse_webhook(tampered, headers)

    # Missing, empty and malformed headers.
    for bad in ({}, {SIGNATURE_HEADER: ""}, {SIGNATURE_HEADER: "v1=abc"}, {"X-Other": "t=1"}):
        with pytest.raises(WebhookSignatureInvalid):
            sandbox.parse_webhook(body, bad)

    # A correct HMAC computed by hand verifies; the scheme is exactly t.body.
    t = int(clock.current.timestamp())
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert sandbox.parse_webhook(body, {SIGNATURE_HEADER: f"t={t},v1={mac}"}).type == (
        "payment.captured"
    )


def test_signed_garbage_is_a_bad_request_not_a_crash(
    sandbox: SandboxProvider, clock: FrozenClock
) -> None:
    t = int(clock.current.timestamp())
    for body in (b"not json", json.dumps({"id": "x", "type": "refund.made"}).encode()):
        mac = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        with pytest.raises(WebhookPayloadInvalid) as caught:
            sandbox.parse_webhook(body, {SIGNATURE_HEADER: f"t={t},v1={mac}"})
        assert caught.value.status == 400
