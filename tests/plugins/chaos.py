"""A handler for crash tests, loaded into a worker subprocess with
``SEAMLINE_PLUGINS='["tests.plugins.chaos"]'`` (and imported by the test that emits).

It reacts only to ``chaos.*`` events. For each event it writes one row to ``chaos_effects``
(created by the test, without a unique constraint so duplicates would show), inside the
worker's transaction, then sleeps a little so a batch takes long enough to be killed in.

Environment (read per call, so the same module serves every worker the test starts):
- ``SEAMLINE_CHAOS_SLEEP_MS``: sleep after each effect (default 3).
- ``SEAMLINE_CHAOS_PROGRESS``: a file to which each call appends the event id *before* the
  transaction commits, so a test can see which calls a crash rolled back.
- ``SEAMLINE_CHAOS_HANG``: when set, an event whose payload has ``"hang": true`` writes
  ``<progress>.hang`` and blocks, so the test can kill the worker mid-batch for sure.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from seamline.events.registry import Event, on

CONSUMER = "tests.chaos.effect"


@on("chaos.*", name=CONSUMER)
def record_effect(session: Session, event: Event) -> None:
    session.execute(
        text("INSERT INTO chaos_effects (event_id, n, pid) VALUES (:event_id, :n, :pid)"),
        {"event_id": event.id, "n": int(event.payload["n"]), "pid": os.getpid()},
    )
    progress = os.environ.get("SEAMLINE_CHAOS_PROGRESS")
    if progress:
        with open(progress, "a") as f:
            f.write(event.id + "\n")
        if event.payload.get("hang") and os.environ.get("SEAMLINE_CHAOS_HANG"):
            Path(progress + ".hang").write_text(event.id)
            time.sleep(120)  # the test kills this process long before
    time.sleep(float(os.environ.get("SEAMLINE_CHAOS_SLEEP_MS", "3")) / 1000)
