"""Catalog lookups on 100k variants against a raw baseline in the same run.

Seeds products (4 variants each, every variant with a GTIN-13 and a EUR price) by bulk insert,
then measures, per second: variant lookup by SKU and by barcode through the service (what
``GET /api/v1/variants/lookup`` runs, without HTTP), and name search through
``list_products(q=…)`` (20 results, rendered). The baseline is the bare indexed query on the
same database through the DBAPI connection: the cost floor of each lookup.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from sqlalchemy import insert

from bench.common import fresh_database, progress, show
from seamline.catalog import codes, service
from seamline.catalog.models import Price, Product, Variant
from seamline.db.engine import Database
from seamline.kit import clock

ADJECTIVES = [
    "red",
    "blue",
    "soft",
    "heavy",
    "light",
    "merino",
    "linen",
    "crisp",
    "classic",
    "urban",
    "alpine",
    "coastal",
]
NOUNS = [
    "tee",
    "hoodie",
    "sneaker",
    "kettle",
    "lamp",
    "backpack",
    "scarf",
    "mug",
    "jacket",
    "sock",
    "cap",
    "blanket",
]
CHUNK = 5000


def _gtin13(n: int) -> str:
    body = f"{400000000000 + n:012d}"
    for check in range(10):
        if codes.gtin_check_digit_ok(body + str(check)):
            return body + str(check)
    raise AssertionError("unreachable")


def seed(db: Database, variants: int, console: Console) -> None:
    products = variants // 4
    now = clock.now()
    with progress(console) as bar:
        task = bar.add_task(f"seeding {variants:,} variants", total=variants)
        for start in range(0, products, CHUNK // 4):
            p_rows: list[dict[str, Any]] = []
            v_rows: list[dict[str, Any]] = []
            pr_rows: list[dict[str, Any]] = []
            for p in range(start, min(products, start + CHUNK // 4)):
                title = f"{ADJECTIVES[p % 12].title()} {NOUNS[(p // 12) % 12].title()} {p}"
                handle = codes.slugify(title)
                pid = f"prd_{p:026d}"
                p_rows.append(
                    {
                        "id": pid,
                        "title": title,
                        "handle": handle,
                        "description": "",
                        "status": "active",
                        "tags": [],
                        "media": [],
                        "attributes": {},
                        "search_text": codes.search_text(title, handle.replace("-", " ")),
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                for i in range(4):
                    n = p * 4 + i
                    vid = f"var_{n:026d}"
                    v_rows.append(
                        {
                            "id": vid,
                            "product_id": pid,
                            "sku": f"SKU-{n:07d}",
                            "barcode": _gtin13(n),
                            "title": "",
                            "options": {"size": "SMLX"[i]},
                            "weight_grams": 200,
                            "position": i,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                    pr_rows.append(
                        {
                            "variant_id": vid,
                            "currency": "EUR",
                            "amount": 1000 + n % 5000,
                            "compare_at": None,
                            "updated_at": now,
                        }
                    )
            with db.transaction() as session:
                session.execute(insert(Product), p_rows)
                session.execute(insert(Variant), v_rows)
                session.execute(insert(Price), pr_rows)
            bar.advance(task, len(v_rows))


def _rate(n: int, fn: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - started)


def run(
    backend: str, postgres_url: str | None, *, variants: int, lookups: int, console: Console
) -> dict[str, float]:
    rng = random.Random(7)
    with fresh_database(backend, postgres_url) as db:
        seed(db, variants, console)
        if backend == "postgres":
            with db.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
        picks = [rng.randrange(variants) for _ in range(lookups)]
        words = [f"{rng.choice(NOUNS)} {rng.randrange(variants // 4)}" for _ in range(lookups)]
        rare = [f"{rng.randrange(variants // 4)}" for _ in range(lookups)]

        def via_service(fn: Callable[[Any, int], object]) -> Callable[[int], object]:
            def call(i: int) -> object:
                with db.transaction(readonly=True) as session:
                    return fn(session, i)

            return call

        sku = _rate(
            lookups, via_service(lambda s, i: service.lookup_variant(s, f"SKU-{picks[i]:07d}"))
        )
        barcode = _rate(
            lookups, via_service(lambda s, i: service.lookup_variant(s, _gtin13(picks[i])))
        )
        name = _rate(
            lookups // 4,
            via_service(lambda s, i: service.list_products(s, q=words[i], limit=20)),
        )
        substring = _rate(
            lookups // 4,
            via_service(lambda s, i: service.list_products(s, q=rare[i], limit=20)),
        )
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            mark = "?" if backend == "sqlite" else "%s"

            def raw_query(sql: str, arg: Callable[[int], str]) -> Callable[[int], object]:
                def call(i: int) -> object:
                    cur.execute(sql, (arg(i),))
                    return cur.fetchall()

                return call

            raw_sku = _rate(
                lookups,
                raw_query(
                    f"SELECT id FROM variants WHERE sku = {mark}", lambda i: f"SKU-{picks[i]:07d}"
                ),
            )
            raw_barcode = _rate(
                lookups,
                raw_query(
                    f"SELECT id FROM variants WHERE barcode = {mark}", lambda i: _gtin13(picks[i])
                ),
            )
            like = f"SELECT id FROM products WHERE search_text LIKE {mark} ORDER BY id LIMIT 21"
            raw_name = _rate(lookups // 4, raw_query(like, lambda i: f"%{words[i]}%"))
            raw_rare = _rate(lookups // 4, raw_query(like, lambda i: f"%{rare[i]}%"))
            raw.rollback()
        finally:
            raw.close()
    results = {
        "variants": float(variants),
        "lookup_sku_per_s": sku,
        "lookup_barcode_per_s": barcode,
        "search_name_per_s": name,
        "search_substring_per_s": substring,
        "raw_sku_per_s": raw_sku,
        "raw_barcode_per_s": raw_barcode,
        "raw_name_like_per_s": raw_name,
        "raw_substring_like_per_s": raw_rare,
    }
    show(
        console,
        f"catalog on {backend}, {variants:,} variants",
        [
            ("lookup by SKU (service)", sku, f"raw indexed query {raw_sku:,.0f}/s"),
            ("lookup by barcode (service)", barcode, f"raw indexed query {raw_barcode:,.0f}/s"),
            ("name search 'mug 1234' (20 rendered)", name, f"raw LIKE {raw_name:,.0f}/s"),
            ("substring search '1234' (20 rendered)", substring, f"raw LIKE {raw_rare:,.0f}/s"),
        ],
    )
    return results
