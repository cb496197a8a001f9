"""An importable app factory for ASGI servers that start their own processes.

``seamline serve --workers N`` hands uvicorn the import string ``seamline.api.asgi:create``
(``factory=True``): every worker process builds its own app — settings from the environment,
its own database pool — exactly as ``serve`` does in one process. Usable directly too:
``uvicorn --factory seamline.api.asgi:create``.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

# Set by ``seamline serve`` for the processes it starts: "1" runs the outbox worker in each.
EMBEDDED_WORKER_ENV = "SEAMLINE_SERVE_EMBEDDED_WORKER"


def create() -> FastAPI:
    """Build the app for one server process (no embedded worker unless ``serve`` asked)."""
    from seamline.api.app import create_app
    from seamline.observability.logging import configure_logging
    from seamline.settings import get_settings

    settings = get_settings()
    configure_logging(settings.resolved_log_format, settings.log_level)
    from seamline.kit import heap

    app = create_app(settings, embedded_worker=os.environ.get(EMBEDDED_WORKER_ENV) == "1")
    heap.settle()  # start-up objects out of every later collection (kit/heap.py)
    return app
