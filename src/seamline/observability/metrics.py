"""Prometheus metrics exposed on ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "seamline_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "seamline_http_request_duration_seconds", "HTTP request latency", ["method", "route"]
)
DELIVERIES = Counter(
    "seamline_event_deliveries_total", "Event delivery attempts", ["kind", "result"]
)
DEAD_LETTERS = Counter("seamline_dead_letters_total", "Deliveries or timers given up on")
TIMERS_FIRED = Counter("seamline_timers_fired_total", "Durable timers fired")
IDEMPOTENT_REPLAYS = Counter("seamline_idempotent_replays_total", "Responses replayed by key")
