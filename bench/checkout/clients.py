"""The load, each in a spawned process of its own (its GIL is not the server's), driven by
``bench.flash_sale.clients.drive`` (progress bar, CPU and memory sampling):

- ``http_process``: N threads, each with its own keep-alive ``httpx.Client``, taking carts from
  a shared queue and POSTing each one's checkout once, with an ``Idempotency-Key``;
- ``raw_process``: N threads, each with its own psycopg connection, running per cart the same
  work as one minimal transaction (the baseline).

Top-level functions: the ``spawn`` start method imports them by name in the child."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from bench.checkout.constants import API, BODY, MAX_ERRORS


def _tally(counter: Any) -> None:
    with counter.get_lock():
        counter.value += 1


# -- HTTP ---------------------------------------------------------------------------------------


def http_process(
    base: str,
    token: str,
    cart_ids: list[str],
    clients: int,
    retries: int,
    counter: Any,
    out: Any,
) -> None:
    """``retries``: how many times a 503 (``concurrent_update``: the server asks for a retry)
    is sent again with the same Idempotency-Key; the latency then covers every try."""
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for cart_id in cart_ids:
        todo.put(cart_id)
    created: list[float] = []
    refused: list[float] = []
    other: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    samples: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(clients + 1)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    headers = {"Authorization": f"Bearer {token}"}

    def client() -> None:
        with httpx.Client(base_url=base, headers=headers, limits=limits, timeout=120) as http:
            http.get("/healthz")  # open the keep-alive connection before the clock starts
            gate.wait()
            while sum(other.values()) < MAX_ERRORS:
                try:
                    cart_id = todo.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter()
                try:
                    for attempt in range(retries + 1):
                        r = http.post(
                            f"{API}/carts/{cart_id}/checkout",
                            json=BODY,
                            headers={"Idempotency-Key": f"bench-{cart_id}"},
                        )
                        if r.status_code != 503 or attempt == retries:
                            break
                        with lock:
                            retried[f"503 try {attempt + 1}"] += 1
                        time.sleep(0.05 * (attempt + 1))
                except httpx.HTTPError as exc:
                    with lock:
                        other[f"transport {type(exc).__name__}"] += 1
                        samples.append(repr(exc)[:300])
                    _tally(counter)
                    continue
                elapsed = time.perf_counter() - started
                code = ""
                if r.status_code != 201:
                    with contextlib.suppress(ValueError):
                        code = str(r.json().get("code", ""))
                with lock:
                    if r.status_code == 201:
                        created.append(elapsed)
                    elif r.status_code == 409 and code == "insufficient_stock":
                        refused.append(elapsed)
                    else:
                        other[f"{r.status_code} {code}".strip()] += 1
                        if len(samples) < 10:
                            samples.append(f"{r.status_code} {r.text[:300]}")
                _tally(counter)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    gate.wait()
    cpu0 = time.process_time()
    started = time.perf_counter()
    for t in threads:
        t.join()
    out.put(
        {
            "elapsed_s": time.perf_counter() - started,
            "created": created,
            "refused": refused,
            "other": dict(other),
            "retried": dict(retried),
            "samples": samples,
            "client_cpu_s": time.process_time() - cpu0,
        }
    )


# -- raw baseline -------------------------------------------------------------------------------

# Reserve + commit collapsed: take the units off on_hand at the location that has them (the
# fullest row: FOR UPDATE re-checks it after a wait), only if they are free.
RAW_TAKE = (
    "UPDATE stock_levels SET on_hand = on_hand - %(q)s, updated_at = now() "
    "WHERE (location_id, variant_id, bucket) = ("
    " SELECT location_id, variant_id, bucket FROM stock_levels"
    " WHERE variant_id = %(v)s AND on_hand - reserved >= %(q)s"
    " ORDER BY on_hand - reserved DESC LIMIT 1 FOR UPDATE)"
    " AND on_hand - reserved >= %(q)s RETURNING location_id"
)
RAW_ORDER = (
    "INSERT INTO orders (id, number, checkout_id, cart_id, profile_id, email, channel_id, status,"
    " payment_state, currency, prices_include_tax, subtotal, discount_total, shipping_total,"
    " tax_total, total, paid_total, refunded_total, shipping_address, codes, promotions,"
    " created_at, updated_at) VALUES (%(id)s, nextval('order_number_seq'), %(chk)s, NULL, NULL,"
    " 'ann@example.com', %(channel)s, 'paid', 'paid', 'EUR', false, %(subtotal)s, 0,"
    " %(shipping)s, 0, %(total)s, %(total)s, 0, %(address)s, '[]', '[]', now(), now())"
)
RAW_GROUP = (
    "INSERT INTO fulfilment_groups (id, order_id, kind, location_id, status, shipping,"
    " routing_reason, created_at, updated_at) VALUES (%(id)s, %(order)s, 'ship', %(location)s,"
    " 'pending', %(shipping)s, '', now(), now())"
)
RAW_LINE = (
    "INSERT INTO order_lines (id, order_id, group_id, variant_id, sku, name, quantity,"
    " unit_price, subtotal, discount, tax, total, quantity_fulfilled, quantity_returned)"
    " VALUES (%(id)s, %(order)s, %(group)s, %(variant)s, %(sku)s, %(sku)s, %(q)s, %(price)s,"
    " %(subtotal)s, 0, 0, %(subtotal)s, 0, 0)"
)
RAW_PAYMENT = (
    "INSERT INTO payments (id, checkout_id, order_id, position, provider, method,"
    " provider_reference, status, currency, amount, captured, refunded, detail, created_at,"
    " updated_at) VALUES (%(id)s, %(chk)s, %(order)s, 0, 'test', 'card', %(ref)s, 'captured',"
    " 'EUR', %(total)s, %(total)s, 0, '{}', now(), now())"
)


class _Refused(Exception):
    pass


def raw_process(
    dsn: str,
    channel_id: str,
    shipping: int,
    carts: list[list[tuple[str, int, str, int]]],
    clients: int,
    counter: Any,
    out: Any,
) -> None:
    """``carts``: per checkout its lines as (variant id, quantity, sku, unit price)."""
    todo: queue.SimpleQueue[list[tuple[str, int, str, int]]] = queue.SimpleQueue()
    for cart in carts:
        todo.put(cart)
    created: list[float] = []
    refused: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(clients + 1)
    address = Jsonb({"name": "Ann", "country": "DE", "postcode": "10115"})

    def one(conn: psycopg.Connection[Any], lines: list[tuple[str, int, str, int]]) -> None:
        order_id, group_id = f"ord_raw{uuid.uuid4().hex}", f"ful_raw{uuid.uuid4().hex}"
        checkout_id = f"chk_raw{uuid.uuid4().hex}"
        subtotal = sum(q * price for _, q, _, price in lines)
        total = subtotal + shipping
        with conn.transaction():
            where = None
            # In variant order, so two checkouts never wait on each other crosswise.
            for variant, q, _, _ in sorted(lines):
                row = conn.execute(RAW_TAKE, {"v": variant, "q": q}).fetchone()
                if row is None:
                    raise _Refused
                where = where or row[0]
            conn.execute(
                RAW_ORDER,
                {
                    "id": order_id,
                    "chk": checkout_id,
                    "channel": channel_id,
                    "subtotal": subtotal,
                    "shipping": shipping,
                    "total": total,
                    "address": address,
                },
            )
            conn.execute(
                RAW_GROUP,
                {"id": group_id, "order": order_id, "location": where, "shipping": shipping},
            )
            for variant, q, sku, price in lines:
                conn.execute(
                    RAW_LINE,
                    {
                        "id": f"orl_raw{uuid.uuid4().hex}",
                        "order": order_id,
                        "group": group_id,
                        "variant": variant,
                        "sku": sku,
                        "q": q,
                        "price": price,
                        "subtotal": q * price,
                    },
                )
            conn.execute(
                RAW_PAYMENT,
                {
                    "id": f"pay_raw{uuid.uuid4().hex}",
                    "chk": checkout_id,
                    "order": order_id,
                    "ref": f"test_{checkout_id}",
                    "total": total,
                },
            )

    def client() -> None:
        try:
            with psycopg.connect(dsn) as conn:
                gate.wait()
                while True:
                    try:
                        lines = todo.get_nowait()
                    except queue.Empty:
                        return
                    started = time.perf_counter()
                    try:
                        one(conn, lines)
                        ok = True
                    except _Refused:
                        ok = False
                    elapsed = time.perf_counter() - started
                    with lock:
                        (created if ok else refused).append(elapsed)
                    _tally(counter)
        except Exception as exc:
            failures.append(repr(exc)[:300])
            with contextlib.suppress(threading.BrokenBarrierError):
                gate.abort()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        gate.wait()
    cpu0 = time.process_time()
    started = time.perf_counter()
    for t in threads:
        t.join()
    out.put(
        {
            "elapsed_s": time.perf_counter() - started,
            "created": created,
            "refused": refused,
            "other": {"failures": len(failures)} if failures else {},
            "samples": failures[:5],
            "client_cpu_s": time.process_time() - cpu0,
        }
    )
