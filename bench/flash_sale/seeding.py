"""Set-up and read-back of the flash database: the database itself, direct psycopg access
(``Store``: raw-baseline rows, audits, counters) and set-up through the HTTP API (``Api``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from bench.flash_sale.constants import API, DB_NAME

# -- a fresh database, dropped afterwards --------------------------------------------------


@contextlib.contextmanager
def flash_database(postgres_url: str) -> Iterator[str]:
    admin_url = make_url(postgres_url).set(drivername="postgresql")
    admin = admin_url.render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    try:
        yield admin_url.set(database=DB_NAME).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


# -- the database: set-up for the raw baseline, audits --------------------------------------


class Store:
    """Direct psycopg access to the flash database: raw rows, audits, counters."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn = psycopg.connect(dsn, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def one(self, sql: str, params: Any = None) -> tuple[Any, ...]:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return tuple(row)

    def raw_rows(self, location_id: str, variant_id: str, units: int, rows: int) -> None:
        """Stock rows written directly (no ledger): only for the raw baseline, deleted after."""
        share, extra = divmod(units, rows)
        with self.conn.transaction():
            for bucket in range(rows):
                self.conn.execute(
                    "INSERT INTO stock_levels (location_id, variant_id, bucket, on_hand, "
                    "reserved, updated_at) VALUES (%s, %s, %s, %s, 0, now())",
                    (location_id, variant_id, bucket, share + (1 if bucket < extra else 0)),
                )

    def drop_raw_rows(self, variant_id: str) -> tuple[int, int]:
        on_hand, reserved = self.one(
            "SELECT coalesce(sum(on_hand), 0), coalesce(sum(reserved), 0) FROM stock_levels "
            "WHERE variant_id = %s",
            (variant_id,),
        )
        self.conn.execute("DELETE FROM stock_levels WHERE variant_id = %s", (variant_id,))
        return int(on_hand), int(reserved)

    def backend_pids(self) -> list[int]:
        """PostgreSQL backends connected to this database (not this connection's)."""
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
        return [int(r[0]) for r in rows]

    def counters(self) -> dict[str, int]:
        row = self.one(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        names = ("commits", "rollbacks", "inserted", "updated", "deleted")
        return {n: int(v) for n, v in zip(names, row, strict=True)}

    def pending_deliveries(self) -> int:
        return int(self.one("SELECT count(*) FROM event_deliveries WHERE status = 'pending'")[0])

    def wait_drained(self, timeout: float = 300) -> tuple[int, float]:
        """The outbox backlog now, and how long the server's worker takes to clear it."""
        backlog = self.pending_deliveries()
        started = time.perf_counter()
        while self.pending_deliveries() and time.perf_counter() - started < timeout:
            time.sleep(0.25)
        return backlog, time.perf_counter() - started

    def audit(self, variant_id: str, received: int, holds_seen: int) -> dict[str, Any]:
        """What the database says after a sell-out."""
        on_hand, reserved, broken, rows = self.one(
            "SELECT coalesce(sum(on_hand), 0), coalesce(sum(reserved), 0), count(*) FILTER "
            "(WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand), count(*) "
            "FROM stock_levels WHERE variant_id = %s",
            (variant_id,),
        )
        holds, held_units = self.one(
            "SELECT count(*), coalesce(sum(quantity), 0) FROM reservations "
            "WHERE variant_id = %s AND status = 'held'",
            (variant_id,),
        )
        drift = self.conn.execute(
            "SELECT s.location_id, s.reserved, coalesce(h.units, 0) FROM "
            "(SELECT location_id, sum(reserved) AS reserved FROM stock_levels "
            " WHERE variant_id = %(v)s GROUP BY location_id) s LEFT JOIN "
            "(SELECT location_id, sum(quantity) AS units FROM reservations "
            " WHERE variant_id = %(v)s AND status = 'held' GROUP BY location_id) h "
            "ON h.location_id = s.location_id WHERE s.reserved <> coalesce(h.units, 0)",
            {"v": variant_id},
        ).fetchall()
        held_units = int(held_units)
        return {
            "received": received,
            "on_hand": int(on_hand),
            "reserved": int(reserved),
            "held_reservations": int(holds),
            "held_units": held_units,
            "oversold": max(0, held_units - received, int(reserved) - received),
            "unsold": received - held_units,
            "rows": int(rows),
            "rows_breaking_checks": int(broken),
            "reserved_vs_holds_drift": [list(r) for r in drift],
            "client_201s_match_holds": holds_seen == int(holds),
        }


# -- HTTP set-up through the API ------------------------------------------------------------


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.http = httpx.Client(
            base_url=base + API, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        self.features = self._features()

    def _features(self) -> dict[str, bool]:
        schema = httpx.get(self.base + "/openapi.json", timeout=60).json()
        paths = schema.get("paths", {})
        create = schema.get("components", {}).get("schemas", {}).get("ReservationCreate", {})
        return {
            "split": any(p.endswith("/split") for p in paths),
            "channel": "channel_id" in create.get("properties", {}),
        }

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(path, json=body)
        if r.status_code >= 300:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text}")
        data: dict[str, Any] = r.json()
        return data

    def location(self, n: int) -> str:
        body = {
            "kind": "warehouse",
            "name": f"Flash warehouse {n}",
            "handle": f"flash-{n}",
            "country": "DE",
            "time_zone": "Europe/Berlin",
            "ships": True,
        }
        return str(self.post("/locations", body)["id"])

    def channel(self, handle: str) -> str:
        return str(self.post("/channels", {"kind": "web", "name": handle, "handle": handle})["id"])

    def variant(self, handle: str) -> str:
        body = {
            "title": handle.replace("-", " ").title(),
            "handle": handle,
            "variants": [
                {
                    "sku": handle.upper(),
                    "options": {"size": "M"},
                    "prices": {"EUR": {"amount": 999}},
                }
            ],
        }
        return str(self.post("/products", body)["variants"][0]["id"])

    def split(self, variant_id: str, buckets: int) -> None:
        r = self.http.put(f"/stock/variants/{variant_id}/split", json={"buckets": buckets})
        if r.status_code >= 300:
            raise RuntimeError(f"PUT split: {r.status_code} {r.text}")

    def receive(self, location_id: str, variant_id: str, units: int) -> None:
        while units > 0:
            chunk = min(units, 1_000_000)
            self.post(
                "/stock/receipts",
                {"location_id": location_id, "variant_id": variant_id, "quantity": chunk},
            )
            units -= chunk

    def close(self) -> None:
        self.http.close()
