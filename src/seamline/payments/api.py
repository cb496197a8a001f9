"""Payment provider webhooks (thin). Not in the OpenAPI document's authenticated operations:
PSPs cannot send an API key — each request is verified by the provider's signature instead
(docs/orders.md, "Payments")."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from seamline.api.deps import DB
from seamline.orders import payment_events

router = APIRouter(tags=["payments"])


@router.post("/payments/webhooks/{provider}", include_in_schema=False)
async def provider_webhook(provider: str, request: Request, db: DB) -> payment_events.WebhookAck:
    body = await request.body()
    headers = dict(request.headers)

    def work() -> payment_events.WebhookAck:
        with db.transaction() as session:
            return payment_events.apply(session, provider, body, headers)

    return await run_in_threadpool(work)
