"""Fixtures for the webhook tests: a real HTTP receiver on 127.0.0.1 and the worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from seamline.events.worker import Worker
from seamline.runtime import Runtime
from tests.webhooks.support import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def worker(runtime: Runtime) -> Worker:
    return runtime.worker()
