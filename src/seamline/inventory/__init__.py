"""Locations now; stock, reservations and availability build on them."""
