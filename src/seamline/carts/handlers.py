"""Event reactions of the carts domain."""

from __future__ import annotations
