"""The garbage collector in long-running processes (``serve``, ``worker``).

CPython's cyclic collector walks every tracked object in its oldest generation on each full
collection. After start-up that is hundreds of thousands of objects — modules, SQLAlchemy
mappers and compiled statements, pydantic validators — that live as long as the process.
Batch work that allocates a lot (a 5,000-call ingestion drain, a checkout's rows and events)
triggers full collections every few seconds, and each walked all of them again: 0.9 s of a
drain's 3.4 s of CPU per 20,000 calls (docs/benchmarks.md, "Identity: the garbage
collector").

``settle()`` collects once, then moves what survives to the permanent generation
(``gc.freeze``), so later collections look only at objects made after start-up. The frozen
objects are never collected, which is what start-up objects are anyway; it is called once per
process, by the commands that run for long, never by ``create_app`` (tests build many apps in
one process, and freezing each one's garbage would keep it for good).
"""

from __future__ import annotations

import gc


def settle() -> int:
    """Collect, then freeze what survives; returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
