"""Routes for payments (thin: resolve the caller, call one service, return a schema)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["payments"])
