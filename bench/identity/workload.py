"""A deterministic stream of Segment calls for the ingestion benchmark.

A growing crowd of visitors: most calls are page views and tracks of people already seen
(nothing new for the identity graph), some come from new visitors (new identifiers), and
some are identity changes — an ``identify`` tying a visitor to an account and an email, an
app ``screen`` with a device id, an ``alias``. Timestamps move forward through the run.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 6, 1, tzinfo=UTC)
PAGES = ["Home", "Category", "Product", "Search", "Cart", "Checkout"]
TRACKS = ["Product Viewed", "Product Added", "Cart Viewed", "Checkout Started"]


def batches(events: int, batch_size: int, seed: int = 7) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    visitors: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for n in range(events):
        at = START + timedelta(milliseconds=20 * n)
        if not visitors or rng.random() < 0.15:
            visitors.append({"anon": f"anon-{seed}-{len(visitors)}", "user": None, "device": None})
        who = visitors[rng.randrange(len(visitors))] if rng.random() < 0.9 else visitors[-1]
        ids: dict[str, Any] = {"anonymousId": who["anon"]}
        if who["user"] is not None:
            ids["userId"] = who["user"]
        call: dict[str, Any] = {
            "messageId": f"m-{seed}-{n}",
            "timestamp": at.isoformat(),
            "context": {
                "ip": f"10.0.{n % 256}.{rng.randrange(256)}",
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0",
                "library": {"name": "analytics.js", "version": "4.1.0"},
                "locale": "en-GB",
            },
        }
        roll = rng.random()
        if roll < 0.07 and who["user"] is None:
            who["user"] = f"user-{seed}-{n}"
            call.update(
                type="identify",
                userId=who["user"],
                anonymousId=who["anon"],
                traits={"email": f"{who['user']}@example.com", "first_name": "Ann", "plan": "free"},
            )
        elif roll < 0.09 and who["user"] is not None:
            call.update(type="identify", **ids, traits={"plan": rng.choice(["free", "plus"])})
        elif roll < 0.11:
            if who["device"] is None:
                who["device"] = f"device-{seed}-{n}"
            call.update(type="screen", name="Feed", **ids)
            call["context"]["device"] = {"id": who["device"], "type": "ios"}
            call["context"]["channel"] = "app"
        elif roll < 0.12 and who["user"] is not None:
            call.update(type="alias", userId=who["user"], previousId=who["anon"])
        elif roll < 0.45:
            name = rng.choice(TRACKS)
            call.update(type="track", event=name, **ids)
            call["properties"] = {
                "sku": f"SKU-{rng.randrange(10_000):05d}",
                "price": rng.randrange(500, 20_000),
                "currency": "EUR",
            }
            call["context"]["channel"] = "web"
        else:
            name = rng.choice(PAGES)
            call.update(type="page", name=name, **ids)
            call["properties"] = {"path": f"/{name.lower()}", "referrer": "https://example.com/"}
            call["context"]["channel"] = "web"
        calls.append(call)
    return [calls[i : i + batch_size] for i in range(0, len(calls), batch_size)]


def bodies(events: int, batch_size: int, seed: int = 7) -> list[bytes]:
    return [
        json.dumps({"batch": chunk, "sentAt": None}).encode()
        for chunk in batches(events, batch_size, seed)
    ]
