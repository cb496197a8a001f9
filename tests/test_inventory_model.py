"""A Hypothesis state machine drives the real inventory services (receive, reserve, extend,
release, expire, commit, transfer, count, return) against a plain model, and after every step
checks: ``on_hand >= 0``, ``0 <= reserved <= on_hand``, the ledger sums to ``on_hand``, the holds
sum to ``reserved`` (per bucket), and availability equals ``on_hand - reserved``."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from seamline.catalog.schemas import ProductCreate
from seamline.catalog.service import create_product
from seamline.db.engine import Database
from seamline.events.worker import Worker
from seamline.inventory import availability, reservations, stock, transfers
from seamline.inventory.models import StockLevel
from seamline.inventory.schemas import (
    AdjustmentCreate,
    CountCreate,
    LocationCreate,
    ReceiptCreate,
    ReservationCreate,
    TransferCreate,
    TransferReceive,
)
from seamline.inventory.service import create_location
from seamline.inventory.verify import verify
from seamline.kit.clock import FrozenClock
from seamline.kit.errors import Conflict
from seamline.runtime import Runtime

LOCATIONS = 2
_serial = count()


@dataclass
class Hold:
    id: str
    location: int
    quantity: int
    ttl: int | None
    placed_at: Any


def _machine(db: Database, clock: FrozenClock, worker: Worker) -> type[RuleBasedStateMachine]:
    class Inventory(RuleBasedStateMachine):
        holds = Bundle("holds")
        trips = Bundle("trips")

        @initialize(split=st.sampled_from([1, 3]))
        def setup(self, split: int) -> None:
            n = next(_serial)
            with db.transaction() as session:
                self.locations = [
                    create_location(
                        session,
                        LocationCreate(
                            kind="warehouse",
                            name=f"Site {n}-{i}",
                            handle=f"site-{n}-{i}",
                            country="DE",
                            time_zone="Europe/Berlin",
                        ),
                    ).id
                    for i in range(LOCATIONS)
                ]
                product = create_product(
                    session,
                    ProductCreate.model_validate(
                        {
                            "title": "Bottle",
                            "handle": f"bottle-{n}",
                            "variants": [{"sku": f"BTL-{n}", "prices": {"EUR": {"amount": 900}}}],
                        }
                    ),
                )
                self.variant = product.variants[0].id
                if split > 1:
                    stock.split(session, self.variant, split)
            self.on_hand = [0] * LOCATIONS
            self.reserved = [0] * LOCATIONS
            self.live: dict[str, Hold] = {}
            self.refs = count()

        def available(self, i: int) -> int:
            return self.on_hand[i] - self.reserved[i]

        @rule(loc=st.integers(0, LOCATIONS - 1), quantity=st.integers(1, 8))
        def receive(self, loc: int, quantity: int) -> None:
            with db.transaction() as session:
                stock.receive(
                    session,
                    ReceiptCreate(
                        location_id=self.locations[loc], variant_id=self.variant, quantity=quantity
                    ),
                )
            self.on_hand[loc] += quantity

        @rule(loc=st.integers(0, LOCATIONS - 1), quantity=st.integers(1, 4))
        def give_back(self, loc: int, quantity: int) -> None:
            with db.transaction() as session:
                stock.adjust(
                    session,
                    AdjustmentCreate(
                        location_id=self.locations[loc],
                        variant_id=self.variant,
                        kind="return",
                        quantity=quantity,
                        reason="customer return",
                    ),
                )
            self.on_hand[loc] += quantity

        @rule(
            target=holds,
            loc=st.integers(0, LOCATIONS - 1),
            quantity=st.integers(1, 6),
            ttl=st.one_of(st.none(), st.integers(30, 600)),
        )
        def reserve(self, loc: int, quantity: int, ttl: int | None) -> Any:
            data = ReservationCreate.model_validate(
                {
                    "lines": [
                        {
                            "location_id": self.locations[loc],
                            "variant_id": self.variant,
                            "quantity": quantity,
                            "reference": f"line-{next(self.refs)}",
                        }
                    ],
                    "ttl_seconds": ttl,
                }
            )
            refused = None
            try:
                with db.transaction() as session:
                    held = reservations.reserve(session, data)[0]
            except Conflict as exc:
                refused = exc
            if refused is not None:
                assert refused.code == "insufficient_stock"
                assert quantity > self.available(loc)
                assert refused.extra["available"] == self.available(loc)
                return None
            assert quantity <= self.available(loc)
            self.reserved[loc] += quantity
            self.live[held.id] = Hold(held.id, loc, quantity, ttl, clock())
            return held.id

        def _settle(self, hold_id: str | None, action: str) -> None:
            if hold_id is None:
                return
            hold = self.live.get(hold_id)
            overdue = (
                hold is not None
                and hold.ttl is not None
                and (clock() - hold.placed_at).total_seconds() >= hold.ttl
            )
            try:
                with db.transaction() as session:
                    getattr(reservations, action)(session, hold_id)
            except Conflict:
                assert hold is None or (overdue and action != "release")
                return
            assert hold is not None
            assert not overdue or action == "release"
            del self.live[hold_id]
            self.reserved[hold.location] -= hold.quantity
            if action == "commit":
                self.on_hand[hold.location] -= hold.quantity

        @rule(hold_id=consumes(holds))
        def release(self, hold_id: str | None) -> None:
            self._settle(hold_id, "release")

        @rule(hold_id=consumes(holds))
        def commit(self, hold_id: str | None) -> None:
            self._settle(hold_id, "commit")

        @rule(hold_id=holds, ttl=st.integers(30, 600))
        def extend(self, hold_id: str | None, ttl: int) -> None:
            hold = self.live.get(hold_id or "")
            if hold_id is None:
                return
            try:
                with db.transaction() as session:
                    reservations.extend(session, hold_id, ttl)
            except Conflict:
                assert hold is None or (
                    hold.ttl is not None and (clock() - hold.placed_at).total_seconds() >= hold.ttl
                )
                return
            assert hold is not None
            hold.ttl, hold.placed_at = ttl, clock()

        @rule(seconds=st.integers(10, 400))
        def time_passes(self, seconds: int) -> None:
            clock.advance(seconds=seconds)
            worker.drain()
            for hold_id, hold in list(self.live.items()):
                if hold.ttl is not None and (clock() - hold.placed_at).total_seconds() >= hold.ttl:
                    del self.live[hold_id]
                    self.reserved[hold.location] -= hold.quantity

        @rule(target=trips, src=st.integers(0, LOCATIONS - 1), quantity=st.integers(1, 6))
        def transfer(self, src: int, quantity: int) -> Any:
            dst = 1 - src
            data = TransferCreate.model_validate(
                {
                    "from_location_id": self.locations[src],
                    "to_location_id": self.locations[dst],
                    "lines": [{"variant_id": self.variant, "quantity": quantity}],
                }
            )
            try:
                with db.transaction() as session:
                    sent = transfers.create(session, data)
            except Conflict:
                assert quantity > self.available(src)
                return None
            self.on_hand[src] -= quantity
            return (sent.id, dst, quantity)

        @rule(trip=consumes(trips), arrived=st.integers(0, 6))
        def arrive(self, trip: tuple[str, int, int] | None, arrived: int) -> None:
            if trip is None:
                return
            transfer_id, dst, quantity = trip
            got = min(arrived, quantity)
            with db.transaction() as session:
                transfers.receive(
                    session,
                    transfer_id,
                    TransferReceive.model_validate(
                        {"lines": [{"variant_id": self.variant, "quantity": got}]}
                    ),
                )
            self.on_hand[dst] += got

        @rule(loc=st.integers(0, LOCATIONS - 1), counted=st.integers(0, 20), stale=st.booleans())
        def count(self, loc: int, counted: int, stale: bool) -> None:
            believed = self.on_hand[loc] + (1 if stale else 0)
            refused = None
            try:
                with db.transaction() as session:
                    stock.count(
                        session,
                        CountCreate(
                            location_id=self.locations[loc],
                            variant_id=self.variant,
                            expected_on_hand=believed,
                            counted=counted,
                        ),
                    )
            except Conflict as exc:
                refused = exc
            if refused is not None:
                assert refused.code == ("stale_count" if stale else "count_below_reserved")
                assert stale or counted < self.reserved[loc]
                return
            assert not stale
            assert counted >= self.reserved[loc]
            self.on_hand[loc] = counted

        @invariant()
        def matches_the_model(self) -> None:
            if not hasattr(self, "variant"):
                return
            with db.transaction(readonly=True) as session:
                view = availability.availability(session, [self.variant])[0]
                by_location = {x.location_id: x for x in view.locations}
                for i, loc in enumerate(self.locations):
                    level = by_location.get(loc)
                    on_hand, reserved = (level.on_hand, level.reserved) if level else (0, 0)
                    assert (on_hand, reserved) == (self.on_hand[i], self.reserved[i])
                    assert level is None or level.available == on_hand - reserved
                assert view.available == sum(self.on_hand) - sum(self.reserved)
                rows = session.query(StockLevel).filter(StockLevel.variant_id == self.variant)
                assert all(0 <= r.reserved <= r.on_hand for r in rows)
                assert verify(session) == []

    return Inventory


@pytest.mark.timeout(600)
def test_inventory_model(db: Database, clock: FrozenClock, runtime: Runtime) -> None:
    machine = _machine(db, clock, runtime.worker())
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=12,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
