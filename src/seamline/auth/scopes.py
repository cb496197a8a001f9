"""The scope catalogue. Every route names exactly one of these; keys carry a set of them."""

from __future__ import annotations

SCOPES: dict[str, str] = {
    "channels:read": "Read the channel registry",
    "channels:write": "Create and change channels",
    "webhooks:read": "Read webhook endpoints and their delivery attempts",
    "webhooks:write": "Create, change, rotate and delete webhook endpoints",
    "events:read": "Read the outbox event log",
    "events:write": "Send tracking events (Segment-compatible API)",
    "catalog:read": "Read products, variants and prices",
    "catalog:write": "Change products, variants and prices",
    "inventory:read": "Read stock and availability",
    "inventory:write": "Receive, count, adjust, transfer and reserve stock",
    "customers:read": "Read customer profiles and timelines",
    "customers:write": "Change customer profiles, merge and unmerge",
    "privacy:read": "Export everything about a customer; read the privacy request log",
    "privacy:write": "Erase customers (right to erasure)",
    "carts:read": "Read carts",
    "carts:write": "Create and change carts",
    "orders:read": "Read orders, fulfilments, payments and returns",
    "orders:write": "Place, fulfil, cancel and refund orders; take returns",
    "checkout:write": "Check out a cart (a publishable key pays with a provider token)",
    "pricing:read": "Read promotions, tax rates and shipping rates",
    "pricing:write": "Change promotions, tax rates and shipping rates",
}

# Publishable keys live in browsers and apps: storefront reads and cart operations only.
PUBLISHABLE_SCOPES = frozenset(
    {"catalog:read", "inventory:read", "carts:read", "carts:write", "checkout:write"}
)
# Event write keys only send tracking events.
EVENT_SCOPES = frozenset({"events:write"})

KEY_KINDS = {"secret": "sk", "publishable": "pk", "event": "ek"}


def allowed_scopes(kind: str) -> frozenset[str]:
    """The most a key of ``kind`` may hold; nothing for a kind that does not exist."""
    if kind == "publishable":
        return PUBLISHABLE_SCOPES
    if kind == "event":
        return EVENT_SCOPES
    if kind == "secret":
        return frozenset(SCOPES)
    return frozenset()
