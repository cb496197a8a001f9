"""The provider contract: value objects, card-number refusal, the registry and the till."""

from __future__ import annotations

import pytest

from seamline.kit.errors import NotFound, SeamlineError, Unauthenticated, Unprocessable
from seamline.payments import get_provider, register
from seamline.payments.manual import ManualProvider, change_for
from seamline.payments.providers import (
    AuthorizeRequest,
    CaptureRequest,
    CardNumberRefused,
    InsufficientTender,
    PaymentProvider,
    PaymentResult,
    ProviderRegistry,
    RefundExceedsCapture,
    RefundRequest,
    UnknownPaymentReference,
    UnknownPaymentToken,
    UnknownProvider,
    VoidRequest,
    WebhookSignatureInvalid,
    WebhooksNotSupported,
    looks_like_card_number,
    luhn_valid,
    registry,
)
from seamline.payments.sandbox import SandboxProvider


def authorize_request(token: str, **overrides: object) -> AuthorizeRequest:
    fields: dict[str, object] = {
        "amount": 2500,
        "currency": "EUR",
        "token": token,
        "idempotency_key": "chk_1:authorize",
    }
    fields.update(overrides)
    return AuthorizeRequest(**fields)  # type: ignore[arg-type]


# -- card numbers are refused before anything else ---------------------------------------------
@pytest.mark.parametrize(
    "pan",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        " 5555 5555 5555 4444 ",  # Mastercard
        "378282246310005",  # Amex, 15 digits
        "4222222222222",  # 13-digit Visa
        "6011111111111117",  # Discover
        "3566002020360505",  # JCB
    ],
)
def test_luhn_valid_card_numbers_are_refused(pan: str) -> None:
    assert looks_like_card_number(pan)
    with pytest.raises(CardNumberRefused) as caught:
        authorize_request(pan)
    error = caught.value
    assert error.code == "card_number_refused"
    assert error.status == 422
    digits = pan.replace(" ", "").replace("-", "")
    assert digits not in error.detail  # the number is never echoed back


@pytest.mark.parametrize(
    "token",
    [
        "4242424242424241",  # fails the Luhn check
        "424242424242",  # 12 digits: too short
        "42424242424242424242",  # 20 digits: too long
        "tok_test_success",
        "pm_1SNq4sL8kF4tYp1aQ2wE3rTy",
        "cash",
        "४२४२४२४२४२४२४२४२",  # non-ASCII digits are not a PAN here (and not a token either)
    ],
)
def test_non_card_numbers_are_not_mistaken_for_one(token: str) -> None:
    assert not looks_like_card_number(token)


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


def test_card_number_refused_by_every_provider_before_it_reaches_them() -> None:
    # The refusal lives in the request itself, so no provider can ever be handed a PAN.
    with pytest.raises(CardNumberRefused):
        AuthorizeRequest(
            amount=100, currency="USD", token="4242 4242 4242 4242", idempotency_key="k"
        )


# -- value objects -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"amount": 0}, "positive integer"),
        ({"amount": -5}, "positive integer"),
        ({"amount": 12.5}, "positive integer"),
        ({"amount": True}, "positive integer"),
        ({"currency": "eur"}, "ISO 4217"),
        ({"idempotency_key": " "}, "idempotency_key is required"),
    ],
)
def test_authorize_request_validates_its_fields(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        authorize_request("tok_test_success", **overrides)


def test_authorize_request_metadata_is_a_read_only_copy() -> None:
    metadata = {"order_id": "ord_1"}
    request = authorize_request("tok_test_success", metadata=metadata)
    metadata["order_id"] = "changed"
    assert request.metadata["order_id"] == "ord_1"
    with pytest.raises(TypeError):
        request.metadata["order_id"] = "x"  # type: ignore[index]
    assert request.money.amount == 2500


def test_a_decline_code_comes_exactly_with_an_unsuccessful_status() -> None:
    with pytest.raises(ValueError, match="decline_code"):
        PaymentResult("declined", "test", None, 100, "USD")
    with pytest.raises(ValueError, match="decline_code"):
        PaymentResult("captured", "test", "tpi_x", 100, "USD", decline_code="card_declined")
    ok = PaymentResult("processing", "test", "tpi_x", 100, "USD")
    assert ok.pending
    assert not ok.succeeded


def test_refund_request_knows_what_is_left() -> None:
    request = RefundRequest(
        provider_reference="x",
        amount=100,
        currency="USD",
        captured_amount=1000,
        refunded_amount=950,
        idempotency_key="k",
    )
    assert request.refundable == 50


# -- errors fit the kit hierarchy --------------------------------------------------------------
def test_errors_map_onto_problem_statuses() -> None:
    assert issubclass(WebhookSignatureInvalid, Unauthenticated)
    assert WebhookSignatureInvalid("x").status == 401
    assert WebhookSignatureInvalid("x").code == "webhook_signature_invalid"
    assert issubclass(UnknownProvider, Unprocessable)
    assert UnknownProvider("x").code == "unknown_payment_provider"
    assert UnknownPaymentToken("x").status == 422
    assert issubclass(UnknownPaymentReference, NotFound)


# -- registry ----------------------------------------------------------------------------------
def test_registry_returns_providers_by_name_and_refuses_unknown_names() -> None:
    reg = ProviderRegistry()
    manual = ManualProvider()
    sandbox = SandboxProvider("whsec_test")
    reg.register(manual)
    reg.register(sandbox)
    assert reg.get("manual") is manual
    assert reg.get("test") is sandbox
    assert reg.names() == ["manual", "test"]
    with pytest.raises(UnknownProvider) as caught:
        reg.get("paypal")
    assert caught.value.extra == {"available": ["manual", "test"]}
    with pytest.raises(ValueError, match="already registered"):
        reg.register(ManualProvider())
    reg.register(ManualProvider(), replace=True)
    assert reg.get("manual") is not manual


def test_module_level_register_and_get_provider() -> None:
    provider = SandboxProvider("whsec_module")
    register(provider, replace=True)
    try:
        assert get_provider("test") is provider
    finally:
        registry.unregister("test")
    with pytest.raises(UnknownProvider):
        get_provider("test")


def test_providers_satisfy_the_protocol() -> None:
    assert isinstance(ManualProvider(), PaymentProvider)
    assert isinstance(SandboxProvider("whsec_x"), PaymentProvider)


# -- manual: cash and card-present at a till ---------------------------------------------------
def test_cash_is_captured_at_once_and_change_is_computed() -> None:
    result = ManualProvider().authorize(
        authorize_request("cash", amount=1730, capture=False, metadata={"tendered": "2000"})
    )
    assert result.status == "captured"
    assert result.change_due == 270
    assert result.amount == 1730
    assert result.provider == "manual"
    assert result.provider_reference is not None
    assert result.provider_reference.startswith("mpi_")


def test_exact_cash_and_missing_tendered_mean_no_change() -> None:
    provider = ManualProvider()
    exact = provider.authorize(authorize_request("cash", metadata={"tendered": "2500"}))
    assert exact.change_due == 0
    assert provider.authorize(authorize_request("cash")).change_due == 0


def test_short_tender_is_refused_clearly() -> None:
    with pytest.raises(InsufficientTender) as caught:
        ManualProvider().authorize(authorize_request("cash", metadata={"tendered": "2000"}))
    error = caught.value
    assert error.code == "insufficient_tender"
    assert error.status == 422
    assert error.extra == {"amount": 2500, "tendered": 2000, "short_by": 500}


@pytest.mark.parametrize("tendered", ["20.00", "-100", "abc", "", "1e3"])
def test_tendered_must_be_whole_minor_units(tendered: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        change_for(100, {"tendered": tendered})
    assert caught.value.code == "invalid_tendered_amount"
    assert caught.value.errors[0].path == "metadata.tendered"


def test_card_present_is_captured_without_change() -> None:
    result = ManualProvider().authorize(authorize_request("card_present"))
    assert result.status == "captured"
    assert result.change_due is None


def test_manual_refuses_unknown_tenders() -> None:
    with pytest.raises(UnknownPaymentToken):
        ManualProvider().authorize(authorize_request("cheque"))


def test_manual_retry_records_the_same_payment() -> None:
    provider = ManualProvider()
    first = provider.authorize(authorize_request("cash"))
    again = provider.authorize(authorize_request("cash"))
    other = provider.authorize(authorize_request("cash", idempotency_key="chk_2:authorize"))
    assert first.provider_reference == again.provider_reference != other.provider_reference


def test_manual_refund_always_succeeds_within_what_was_taken() -> None:
    provider = ManualProvider()
    paid = provider.authorize(authorize_request("cash"))
    assert paid.provider_reference is not None
    refund = provider.refund(
        RefundRequest(
            provider_reference=paid.provider_reference,
            amount=2500,
            currency="EUR",
            captured_amount=2500,
            idempotency_key="ret_1",
        )
    )
    assert refund.status == "succeeded"
    assert refund.amount == 2500
    assert refund.payment_reference == paid.provider_reference
    with pytest.raises(RefundExceedsCapture):
        provider.refund(
            RefundRequest(
                provider_reference=paid.provider_reference,
                amount=1,
                currency="EUR",
                captured_amount=2500,
                refunded_amount=2500,
                idempotency_key="ret_2",
            )
        )


def test_manual_capture_and_void_confirm_and_check_references() -> None:
    provider = ManualProvider()
    paid = provider.authorize(authorize_request("card_present"))
    assert paid.provider_reference is not None
    captured = provider.capture(
        CaptureRequest(paid.provider_reference, 2500, "EUR", 2500, idempotency_key="cap")
    )
    assert captured.status == "captured"
    voided = provider.void(VoidRequest(paid.provider_reference, 2500, "EUR", "void"))
    assert voided.status == "voided"
    with pytest.raises(UnknownPaymentReference):
        provider.void(VoidRequest("tpi_nope", 2500, "EUR", "void"))


def test_manual_has_no_webhooks() -> None:
    with pytest.raises(WebhooksNotSupported) as caught:
        ManualProvider().parse_webhook(b"{}", {})
    assert isinstance(caught.value, SeamlineError)
    assert caught.value.status == 404
