"""Replay recorded Stripe API responses through the SDK's own ``http_client`` hook.

``RecordedStripe`` is a ``stripe.HTTPClient``: the real ``StripeClient`` builds the request
(URL, form encoding, headers) exactly as it would against api.stripe.com, then hands it to us
instead of a socket. Each expected exchange asserts the method, path and form parameters sent and
answers with a JSON payload recorded from Stripe's test mode. No request ever leaves the process;
an unexpected one fails the test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

RECORDED = Path(__file__).parent / "recorded"


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return data


@dataclass
class Exchange:
    method: str
    path: str
    params: dict[str, str]
    payload: str  # a file under recorded/
    status: int = 200
    sent_headers: dict[str, str] = field(default_factory=dict)


class RecordedStripe(stripe.HTTPClient):
    name = "recorded"

    def __init__(self, *exchanges: Exchange) -> None:
        super().__init__()
        self.expected = list(exchanges)
        self.done: list[Exchange] = []

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        **_: Any,
    ) -> tuple[str, int, Mapping[str, str]]:
        assert self.expected, f"unexpected Stripe request: {method.upper()} {url}"
        exchange = self.expected.pop(0)
        parts = urlsplit(url)
        assert parts.scheme == "https"
        assert parts.netloc == "api.stripe.com"
        assert (method.upper(), parts.path) == (exchange.method, exchange.path)
        body = post_data.decode() if isinstance(post_data, bytes) else (post_data or "")
        assert dict(parse_qsl(body, keep_blank_values=True)) == exchange.params
        exchange.sent_headers = dict(headers or {})
        self.done.append(exchange)
        payload = (RECORDED / exchange.payload).read_text()
        return payload, exchange.status, {"request-id": "req_recorded"}

    def request_stream(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the payment adapter never streams")

    def close(self) -> None:
        pass

    def assert_done(self) -> None:
        assert not self.expected, f"expected requests never sent: {self.expected}"


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header, made by the SDK's helper where this version has one."""
    helper = getattr(stripe.WebhookSignature, "generate_signature_header", None)
    if helper is not None:
        return str(helper(payload, secret, timestamp=timestamp))
    import time

    t = int(time.time()) if timestamp is None else timestamp
    v1 = stripe.WebhookSignature._compute_signature(f"{t}.{payload}", secret)
    return f"t={t},v1={v1}"
