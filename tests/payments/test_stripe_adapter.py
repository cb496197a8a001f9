"""The Stripe adapter against recorded API responses, and webhooks signed the way Stripe signs.

The real ``stripe.StripeClient`` runs end to end; only its transport is swapped for
``RecordedStripe`` (the SDK's ``http_client`` hook), which asserts every request and replays a
payload recorded from Stripe's test mode. Nothing touches the network.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import stripe

from seamline.kit.errors import Conflict
from seamline.payments.providers import (
    AuthorizeRequest,
    CaptureRequest,
    CardNumberRefused,
    PaymentProvider,
    PaymentProviderMisconfigured,
    PaymentProviderUnavailable,
    PaymentStateConflict,
    RefundExceedsCapture,
    RefundRequest,
    UnknownPaymentReference,
    UnknownPaymentToken,
    VoidRequest,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from seamline.payments.stripe_adapter import (
    StripeProvider,
    decline_outcome,
    from_stripe_amount,
    to_stripe_amount,
)
from tests.payments.recorded_stripe import RECORDED, Exchange, RecordedStripe, recorded, sign

API_KEY = "sk_test_seamline_recorded"
WHSEC = "whsec_seamline_recorded"
PI_AUTO = "pi_3SNq4tL8kF4tYp1a0kHq2ZbA"
PI_MANUAL = "pi_3SNq5GL8kF4tYp1a1mWc7RdE"
ORDER = "ord_01jb8x2k9m3n4p5q6r7s8t9v0w"


def provider(*exchanges: Exchange, **options: object) -> tuple[StripeProvider, RecordedStripe]:
    transport = RecordedStripe(*exchanges)
    return (
        StripeProvider(
            API_KEY,
            webhook_secret=WHSEC,
            http_client=transport,
            max_network_retries=0,
            **options,  # type: ignore[arg-type]
        ),
        transport,
    )


def create_params(
    token: str = "pm_card_visa", *, capture_method: str = "automatic"
) -> dict[str, str]:
    return {
        "amount": "4999",
        "currency": "usd",
        "payment_method": token,
        "confirm": "true",
        "capture_method": capture_method,
        "metadata[order_id]": ORDER,
        "automatic_payment_methods[enabled]": "true",
        "automatic_payment_methods[allow_redirects]": "never",
    }


def authorize_request(token: str = "pm_card_visa", *, capture: bool = True) -> AuthorizeRequest:
    return AuthorizeRequest(
        amount=4999,
        currency="USD",
        token=token,
        idempotency_key=f"chk_1:authorize:{token}:{capture}",
        capture=capture,
        metadata={"order_id": ORDER},
    )


def test_the_adapter_is_a_payment_provider() -> None:
    stripe_provider, _ = provider()
    assert isinstance(stripe_provider, PaymentProvider)
    assert stripe_provider.name == "stripe"


# -- authorize ---------------------------------------------------------------------------------
def test_authorize_and_capture_in_one_call() -> None:
    stripe_provider, transport = provider(
        Exchange("POST", "/v1/payment_intents", create_params(), "payment_intent_succeeded.json")
    )
    result = stripe_provider.authorize(authorize_request())
    transport.assert_done()
    assert result.status == "captured"
    assert result.provider_reference == PI_AUTO
    assert (result.amount, result.currency) == (4999, "USD")
    assert result.decline_code is None
    sent = transport.done[0].sent_headers
    assert sent["Idempotency-Key"] == "chk_1:authorize:pm_card_visa:True"
    assert sent["Authorization"] == f"Bearer {API_KEY}"
    assert sent["Content-Type"] == "application/x-www-form-urlencoded"


def test_authorize_only_uses_manual_capture() -> None:
    stripe_provider, transport = provider(
        Exchange(
            "POST",
            "/v1/payment_intents",
            create_params(capture_method="manual"),
            "payment_intent_requires_capture.json",
        )
    )
    result = stripe_provider.authorize(authorize_request(capture=False))
    transport.assert_done()
    assert (result.status, result.provider_reference, result.amount) == (
        "authorized",
        PI_MANUAL,
        4999,
    )


def test_a_return_url_replaces_the_no_redirect_restriction() -> None:
    params = create_params()
    del params["automatic_payment_methods[enabled]"]
    del params["automatic_payment_methods[allow_redirects]"]
    params["return_url"] = "https://shop.example/checkout/return"
    stripe_provider, transport = provider(
        Exchange("POST", "/v1/payment_intents", params, "payment_intent_succeeded.json"),
        return_url="https://shop.example/checkout/return",
    )
    assert stripe_provider.authorize(authorize_request()).status == "captured"
    transport.assert_done()


def test_three_d_secure_requires_action_and_hands_over_the_client_secret() -> None:
    stripe_provider, transport = provider(
        Exchange(
            "POST",
            "/v1/payment_intents",
            create_params("pm_card_authenticationRequired"),
            "payment_intent_requires_action.json",
        )
    )
    result = stripe_provider.authorize(authorize_request("pm_card_authenticationRequired"))
    transport.assert_done()
    assert result.status == "requires_action"
    assert result.pending
    assert result.client_secret == recorded("payment_intent_requires_action.json")["client_secret"]


@pytest.mark.parametrize(
    ("token", "payload", "code", "reference", "message"),
    [
        (
            "pm_card_visa_chargeDeclined",
            "error_card_declined.json",
            "card_declined",
            "pi_3SNq6BL8kF4tYp1a0Tg8UvXy",
            "Your card was declined.",
        ),
        (
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            "error_insufficient_funds.json",
            "insufficient_funds",
            "pi_3SNq6xL8kF4tYp1a1Lp3NfQs",
            "Your card has insufficient funds.",
        ),
    ],
)
def test_declines_are_results_not_exceptions(
    token: str, payload: str, code: str, reference: str, message: str
) -> None:
    stripe_provider, transport = provider(
        Exchange("POST", "/v1/payment_intents", create_params(token), payload, status=402)
    )
    result = stripe_provider.authorize(authorize_request(token))
    transport.assert_done()
    assert result.status == "declined"
    assert result.decline_code == code
    assert result.provider_reference == reference  # the failed intent, for the record
    assert result.message == message
    assert result.retryable is False
    assert (result.amount, result.currency) == (4999, "USD")


def test_card_numbers_never_reach_stripe() -> None:
    stripe_provider, transport = provider()  # no exchange expected: any request fails the test
    with pytest.raises(CardNumberRefused):
        stripe_provider.authorize(authorize_request("4242 4242 4242 4242"))
    assert transport.done == []


def test_a_rejected_api_key_is_a_server_problem_not_a_401() -> None:
    stripe_provider, _ = provider(
        Exchange("POST", "/v1/payment_intents", create_params(), "error_api_key.json", status=401)
    )
    with pytest.raises(PaymentProviderMisconfigured) as caught:
        stripe_provider.authorize(authorize_request())
    assert caught.value.status == 500


# -- capture, void, refund ---------------------------------------------------------------------
def test_partial_capture() -> None:
    stripe_provider, transport = provider(
        Exchange(
            "POST",
            f"/v1/payment_intents/{PI_MANUAL}/capture",
            {"amount_to_capture": "3000"},
            "payment_intent_captured.json",
        )
    )
    result = stripe_provider.capture(
        CaptureRequest(PI_MANUAL, 3000, "USD", 4999, idempotency_key="chk_1:capture")
    )
    transport.assert_done()
    assert (result.status, result.amount, result.provider_reference) == (
        "captured",
        3000,
        PI_MANUAL,
    )
    assert transport.done[0].sent_headers["Idempotency-Key"] == "chk_1:capture"


def test_void_cancels_the_intent() -> None:
    stripe_provider, transport = provider(
        Exchange(
            "POST", f"/v1/payment_intents/{PI_MANUAL}/cancel", {}, "payment_intent_canceled.json"
        )
    )
    result = stripe_provider.void(VoidRequest(PI_MANUAL, 4999, "USD", "chk_1:void"))
    transport.assert_done()
    assert (result.status, result.amount) == ("voided", 4999)


def test_capture_after_void_is_a_conflict() -> None:
    stripe_provider, _ = provider(
        Exchange(
            "POST",
            f"/v1/payment_intents/{PI_MANUAL}/capture",
            {"amount_to_capture": "4999"},
            "error_unexpected_state.json",
            status=400,
        )
    )
    with pytest.raises(PaymentStateConflict) as caught:
        stripe_provider.capture(CaptureRequest(PI_MANUAL, 4999, "USD", 4999, "chk_1:capture"))
    assert isinstance(caught.value, Conflict)
    assert caught.value.extra == {"provider_code": "payment_intent_unexpected_state"}


def test_unknown_intent_is_not_found() -> None:
    stripe_provider, _ = provider(
        Exchange(
            "POST",
            "/v1/payment_intents/pi_3SNq0000000000000000000/cancel",
            {},
            "error_resource_missing.json",
            status=404,
        )
    )
    with pytest.raises(UnknownPaymentReference):
        stripe_provider.void(VoidRequest("pi_3SNq0000000000000000000", 1, "USD", "void"))


def test_refund() -> None:
    stripe_provider, transport = provider(
        Exchange(
            "POST",
            "/v1/refunds",
            {
                "payment_intent": PI_AUTO,
                "amount": "1500",
                "reason": "requested_by_customer",
                "metadata[return_id]": "ret_01jb8y7c2d3f4g5h6j7k8m9n0p",
            },
            "refund_succeeded.json",
        )
    )
    result = stripe_provider.refund(
        RefundRequest(
            provider_reference=PI_AUTO,
            amount=1500,
            currency="USD",
            captured_amount=4999,
            idempotency_key="ret_01jb8y7c2d3f4g5h6j7k8m9n0p",
            reason="requested_by_customer",
            metadata={"return_id": "ret_01jb8y7c2d3f4g5h6j7k8m9n0p"},
        )
    )
    transport.assert_done()
    assert result.status == "succeeded"
    assert result.provider_reference == "re_3SNq4tL8kF4tYp1a0Wn5TgHb"
    assert result.payment_reference == PI_AUTO
    assert (result.amount, result.currency) == (1500, "USD")


def test_over_refund_is_refused_before_asking_stripe() -> None:
    stripe_provider, transport = provider()
    with pytest.raises(RefundExceedsCapture):
        stripe_provider.refund(
            RefundRequest(
                provider_reference=PI_AUTO,
                amount=4000,
                currency="USD",
                captured_amount=4999,
                refunded_amount=1500,
                idempotency_key="ret_2",
            )
        )
    assert transport.done == []


# -- mapping -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "decline_code", "expected"),
    [
        ("card_declined", "generic_decline", ("declined", "card_declined", False)),
        ("card_declined", "insufficient_funds", ("declined", "insufficient_funds", False)),
        ("card_declined", "stolen_card", ("declined", "card_declined", False)),
        ("card_declined", "fraudulent", ("declined", "card_declined", False)),
        ("expired_card", None, ("declined", "expired_card", False)),
        ("incorrect_cvc", None, ("declined", "incorrect_cvc", False)),
        ("processing_error", None, ("failed", "processing_error", True)),
        ("card_declined", "try_again_later", ("failed", "processing_error", True)),
        ("authentication_required", None, ("declined", "authentication_required", False)),
        (None, None, ("declined", "card_declined", False)),
    ],
)
def test_decline_mapping(
    code: str | None, decline_code: str | None, expected: tuple[str, str, bool]
) -> None:
    assert decline_outcome(code, decline_code) == expected


def test_isk_is_two_decimal_at_stripe() -> None:
    assert to_stripe_amount(500, "ISK") == 50000
    assert from_stripe_amount(50000, "ISK") == 500
    assert to_stripe_amount(500, "JPY") == 500
    assert to_stripe_amount(4999, "USD") == 4999


# -- webhooks ----------------------------------------------------------------------------------
def webhook(
    name: str, *, secret: str = WHSEC, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    payload = (RECORDED / name).read_text()
    return payload.encode(), {"Stripe-Signature": sign(payload, secret, timestamp)}


def test_payment_intent_succeeded_webhook() -> None:
    stripe_provider, _ = provider()
    body, headers = webhook("event_payment_intent_succeeded.json")
    event = stripe_provider.parse_webhook(body, headers)
    assert event.provider == "stripe"
    assert event.event_id == "evt_3SNq4tL8kF4tYp1a0c9Dx2Vm"
    assert event.provider_type == "payment_intent.succeeded"
    assert (event.type, event.status) == ("payment.captured", "captured")
    assert event.provider_reference == PI_AUTO
    assert (event.amount, event.currency) == (4999, "USD")
    assert event.occurred_at.timestamp() == 1761729602


def test_payment_failed_webhook_carries_the_decline() -> None:
    stripe_provider, _ = provider()
    event = stripe_provider.parse_webhook(*webhook("event_payment_intent_payment_failed.json"))
    assert (event.type, event.status, event.decline_code) == (
        "payment.failed",
        "declined",
        "insufficient_funds",
    )
    assert event.provider_reference == "pi_3SNq6xL8kF4tYp1a1Lp3NfQs"


def test_charge_refunded_webhook_points_at_the_intent() -> None:
    stripe_provider, _ = provider()
    event = stripe_provider.parse_webhook(*webhook("event_charge_refunded.json"))
    assert (event.type, event.status) == ("payment.refunded", "partially_refunded")
    assert event.provider_reference == PI_AUTO
    assert event.amount == 1500  # total refunded so far


def test_other_events_are_acknowledged_as_unhandled() -> None:
    stripe_provider, _ = provider()
    event = stripe_provider.parse_webhook(*webhook("event_customer_created.json"))
    assert event.type == "unhandled"
    assert event.provider_type == "customer.created"
    assert event.provider_reference is None


def test_a_redelivered_webhook_keeps_its_event_id() -> None:
    stripe_provider, _ = provider()
    first = stripe_provider.parse_webhook(*webhook("event_payment_intent_succeeded.json"))
    again = stripe_provider.parse_webhook(
        *webhook("event_payment_intent_succeeded.json", timestamp=int(time.time()) + 5)
    )
    assert first.event_id == again.event_id


def test_signature_matches_the_documented_scheme() -> None:
    # Independent of the SDK helper: v1 = HMAC-SHA256(secret, f"{t}.{payload}").
    payload = (RECORDED / "event_payment_intent_succeeded.json").read_text()
    t = int(time.time())
    v1 = hmac.new(WHSEC.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    assert sign(payload, WHSEC, t) == f"t={t},v1={v1}"
    stripe_provider, _ = provider()
    assert stripe_provider.parse_webhook(payload.encode(), {"stripe-signature": f"t={t},v1={v1}"})


def test_forged_stale_and_unsigned_webhooks_are_rejected() -> None:
    stripe_provider, _ = provider()
    body, _headers = webhook("event_payment_intent_succeeded.json")

    forged_body, forged = webhook("event_payment_intent_succeeded.json", secret="whsec_attacker")
    with pytest.raises(WebhookSignatureInvalid) as caught:
        stripe_provider.parse_webhook(forged_body, forged)
    assert caught.value.status == 401
    assert caught.value.code == "webhook_signature_invalid"

    stale_body, stale = webhook(
        "event_payment_intent_succeeded.json", timestamp=int(time.time()) - 301
    )
    with pytest.raises(WebhookSignatureInvalid):
        stripe_provider.parse_webhook(stale_body, stale)

    tampered = json.loads(body)
    tampered["data"]["object"]["amount_received"] = 1
    with pytest.raises(WebhookSignatureInvalid):
        stripe_provider.parse_webhook(json.dumps(tampered).encode(), _headers)

    for headers in ({}, {"Stripe-Signature": ""}, {"Stripe-Signature": "t=abc,v1=00"}):
        with pytest.raises(WebhookSignatureInvalid):
            stripe_provider.parse_webhook(body, headers)
    with pytest.raises(WebhookSignatureInvalid):
        stripe_provider.parse_webhook(b"\xff\xfe", {"Stripe-Signature": sign("x", WHSEC)})


def test_signed_non_event_is_a_bad_request() -> None:
    stripe_provider, _ = provider()
    payload = json.dumps({"object": "payment_intent", "id": PI_AUTO})
    with pytest.raises(WebhookPayloadInvalid):
        stripe_provider.parse_webhook(payload.encode(), {"Stripe-Signature": sign(payload, WHSEC)})


def test_construct_event_agrees_with_the_adapter() -> None:
    # Stripe's own construct_event accepts exactly what the adapter accepts.
    body, headers = webhook("event_payment_intent_succeeded.json")
    event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], WHSEC)
    assert event.id == "evt_3SNq4tL8kF4tYp1a0c9Dx2Vm"
    assert event.type == "payment_intent.succeeded"


def test_an_unknown_payment_method_is_an_unknown_token() -> None:
    stripe_provider, _ = provider(
        Exchange(
            "POST",
            "/v1/payment_intents",
            create_params("pm_1SNqZZL8kF4tYp1aNoSuchPm"),
            "error_no_such_payment_method.json",
            status=400,
        )
    )
    with pytest.raises(UnknownPaymentToken) as caught:
        stripe_provider.authorize(authorize_request("pm_1SNqZZL8kF4tYp1aNoSuchPm"))
    assert caught.value.status == 422
    assert caught.value.extra == {"provider_code": "resource_missing"}


def test_a_stripe_outage_says_retry_with_the_same_key() -> None:
    stripe_provider, transport = provider(
        Exchange("POST", "/v1/payment_intents", create_params(), "error_api_error.json", 500)
    )
    with pytest.raises(PaymentProviderUnavailable) as caught:
        stripe_provider.authorize(authorize_request())
    transport.assert_done()  # max_network_retries=0 here: exactly one attempt
    assert caught.value.status == 503
    assert caught.value.headers == {"Retry-After": "2"}
