"""Checkout, orders, fulfilment and routing, pick-up, tracking, returns."""
