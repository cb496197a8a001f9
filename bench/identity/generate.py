"""Synthetic customers written straight into the identity tables with ``COPY`` (PostgreSQL).

People, not rows, are generated: each person has anonymous browser ids, maybe a user id
(registered), an email, a phone, a loyalty card, app devices with their own anonymous ids; a
few families share a tablet (the device is seen with two accounts, the older link is
refused). Every identity call a person made becomes the edges ``identify`` would have
recorded, and the clusters, link decisions and merge pointers are computed with the real rule
(``rules.partition``) per family, so the stored graph is exactly what ingestion would have
left. With ``events_per_person`` > 0 it also writes tracked events, trait history, metrics,
channel activity, domain timeline entries and consents — the customer 360's tables.

Deterministic: the same ``seed`` and sizes give the same rows (ids included).
"""

from __future__ import annotations

import json
import multiprocessing
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import combinations
from typing import Any

import psycopg

from seamline.identity.rules import DEFAULT_RULES, Edge, Key, partition

START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR = 365 * 24 * 3600
WRITE_KEY_ID = "key_bench_generator"
FLUSH_FAMILIES = 2_000

COLUMNS: dict[str, tuple[str, ...]] = {
    "profiles": ("id", "cluster_id", "created_at", "updated_at"),
    "identifiers": (
        "id",
        "kind",
        "value",
        "raw",
        "valid",
        "profile_id",
        "source_channel",
        "source_key_id",
        "first_seen",
        "last_seen",
    ),
    "identity_links": (
        "identifier_a_id",
        "identifier_b_id",
        "observed_at",
        "message_id",
        "decision",
    ),
    "profile_merges": (
        "id",
        "profile_id",
        "into_profile_id",
        "cluster_id",
        "trigger",
        "trigger_message_id",
        "triggered_by",
        "reason",
        "evidence",
        "created_at",
    ),
    "tracked_events": (
        "profile_id",
        "id",
        "write_key_id",
        "message_id",
        "type",
        "name",
        "category",
        "user_id",
        "anonymous_id",
        "properties",
        "traits",
        "context",
        "timestamp",
        "original_timestamp",
        "sent_at",
        "received_at",
        "channel",
        "ip",
        "user_agent",
    ),
    "profile_traits": ("profile_id", "id", "name", "value", "source", "observed_at", "event_id"),
    "profile_metrics": (
        "profile_id",
        "currency",
        "orders_count",
        "total_spent_minor",
        "refunded_minor",
        "first_purchase_at",
        "last_purchase_at",
    ),
    "channel_activity": ("profile_id", "channel", "first_seen", "last_seen", "events_count"),
    "timeline_entries": (
        "profile_id",
        "id",
        "event_id",
        "type",
        "occurred_at",
        "channel",
        "aggregate_type",
        "aggregate_id",
        "summary",
        "data",
    ),
    "consents": (
        "profile_id",
        "channel",
        "purpose",
        "state",
        "level",
        "source",
        "effective_at",
        "recorded_at",
        "change_id",
    ),
}
# Parents before children (foreign keys are checked row by row during COPY).
TABLE_ORDER = tuple(COLUMNS)

PAGES = ["Home", "Category", "Product", "Search", "Cart", "Checkout", "Account", "Store Locator"]
TRACKS = ["Product Viewed", "Product Added", "Cart Viewed", "Order Completed", "Signed In"]
SCREENS = ["Feed", "Product", "Cart", "Profile"]
AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile",
]
FIRST_NAMES = ["Ann", "Bob", "Chloé", "Dmitri", "Eva", "Farid", "Greta", "Hiro", "Ines", "Jon"]


@dataclass
class Stats:
    families: int = 0
    persons: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLUMNS, 0))


def pg_dsn(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` → ``postgresql://``)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"


def _t(rng: random.Random) -> datetime:
    return START + timedelta(seconds=rng.randrange(YEAR), microseconds=rng.randrange(1_000_000))


class _Family:
    """One family's rows, built in memory (a few dozen rows) then handed to the buffers."""

    def __init__(self, index: int, persons: int, events_per_person: int, seed: int) -> None:
        self.rng = random.Random(seed * 1_000_003 + index)
        self.index = index
        self.rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in COLUMNS}
        self.ident: dict[Key, str] = {}  # (kind, value) → identifier id
        self.profile_of: dict[Key, str] = {}
        self.first: dict[Key, datetime] = {}
        self.last: dict[Key, datetime] = {}
        self.channel: dict[Key, str] = {}
        self.edges: dict[tuple[Key, Key], Edge] = {}
        self.calls = 0
        self.people: list[dict[str, Any]] = []
        for member in range(persons):
            self.people.append(self._person(member))
        if persons > 1:
            self._share_device()
        self._resolve()
        if events_per_person:
            for person in self.people:
                self._activity(person, events_per_person)

    # -- identity ---------------------------------------------------------------------------

    def _key(self, kind: str, value: str, at: datetime, channel: str) -> Key:
        key = (kind, value)
        if key not in self.ident:
            n = len(self.ident)
            self.ident[key] = f"idn_g{self.index:010d}{n:04d}"
            self.profile_of[key] = f"prf_g{self.index:010d}{n:04d}"
            self.channel[key] = channel
            self.first[key] = self.last[key] = at
        self.first[key] = min(self.first[key], at)
        self.last[key] = max(self.last[key], at)
        return key

    def _call(self, keys: list[Key], at: datetime) -> str:
        """An identity call carrying ``keys``: the edges ingestion would record."""
        self.calls += 1
        message_id = f"msg_g{self.index:010d}{self.calls:04d}"
        for a, b in combinations(sorted(set(keys)), 2):
            edge = Edge(a, b, at, message_id)
            held = self.edges.get((a, b))
            if held is None or (held.observed_at, held.message_id) < (at, message_id):
                self.edges[(a, b)] = edge
        return message_id

    def _person(self, member: int) -> dict[str, Any]:
        rng = self.rng
        tag = f"{self.index}-{member}"
        registered = rng.random() < 0.6
        person: dict[str, Any] = {"tag": tag, "registered": registered, "anons": [], "apps": []}
        first_at = _t(rng)
        user = self._key("user_id", f"usr-{tag}", first_at, "web") if registered else None
        person["user"] = user
        email = None
        if rng.random() < (0.95 if registered else 0.25):
            email = self._key("email", f"p{tag}@example{self.index % 97}.com", first_at, "web")
        person["email"] = email
        extras = []
        if registered and rng.random() < 0.35:
            extras.append(self._key("phone", f"+1555{self.index:07d}{member}", first_at, "web"))
        if registered and rng.random() < 0.12:
            extras.append(
                self._key("loyalty_card", f"L{self.index:09d}{member}", first_at, "store")
            )
        for j in range(1 + int(rng.random() < 0.5) + int(rng.random() < 0.2)):
            at = first_at + timedelta(days=30 * j, seconds=rng.randrange(86_400))
            anon = self._key("anonymous_id", f"anon-{tag}-{j}", at, "web")
            person["anons"].append(anon)
            carried = [k for k in (user, email) if k is not None] + (extras if j == 0 else [])
            if carried:
                self._call([anon, *carried], at)
        for k in range(int(rng.random() < 0.4) + int(rng.random() < 0.1)):
            at = first_at + timedelta(days=10 + 40 * k, seconds=rng.randrange(86_400))
            device = self._key("device_id", f"dev-{tag}-{k}", at, "app")
            app_anon = self._key("anonymous_id", f"app-{tag}-{k}", at, "app")
            person["apps"].append((device, app_anon))
            self._call([device, app_anon] + ([user] if user else []), at)
        return person

    def _share_device(self) -> None:
        """A family tablet: each member signs in on the first member's device, in turn."""
        owner = self.people[0]
        if not owner["apps"]:
            device = self._key("device_id", f"dev-{owner['tag']}-tab", _t(self.rng), "app")
            owner["apps"].append(
                (device, self._key("anonymous_id", f"app-{owner['tag']}-tab", _t(self.rng), "app"))
            )
        device, app_anon = owner["apps"][0]
        for person in self.people:
            if person["user"] is not None:
                self._call([device, app_anon, person["user"]], _t(self.rng))

    def _resolve(self) -> None:
        profiles = {self.profile_of[k]: [k] for k in self.ident}
        result = partition(profiles, self.edges.values(), DEFAULT_RULES)
        self.canonical = result.canonical
        refused = {(e.a, e.b) for e in result.refused}
        for key, ident in self.ident.items():
            pid = self.profile_of[key]
            self.rows["profiles"].append(
                (pid, result.canonical[pid], self.first[key], self.last[key])
            )
            self.rows["identifiers"].append(
                (
                    ident,
                    key[0],
                    key[1],
                    key[1],
                    True,
                    pid,
                    self.channel[key],
                    WRITE_KEY_ID,
                    self.first[key],
                    self.last[key],
                )
            )
        for (a, b), edge in self.edges.items():
            ia, ib = sorted((self.ident[a], self.ident[b]))
            decision = "refused" if (a, b) in refused else "linked"
            self.rows["identity_links"].append(
                (ia, ib, edge.observed_at, edge.message_id, decision)
            )
        for n, (edge, joined, into) in enumerate(result.accepted):
            evidence = {
                "identifiers": [list(edge.a), list(edge.b)],
                "observed_at": edge.observed_at.isoformat(),
                "message_id": edge.message_id,
            }
            self.rows["profile_merges"].append(
                (
                    f"mrg_g{self.index:010d}{n:04d}",
                    joined,
                    into,
                    result.canonical[into],
                    "identify",
                    edge.message_id,
                    WRITE_KEY_ID,
                    f"shared {edge.a[0]} and {edge.b[0]} in one call",
                    json.dumps(evidence),
                    edge.observed_at,
                )
            )

    # -- activity (the 360's tables) ---------------------------------------------------------

    def _activity(self, person: dict[str, Any], count: int) -> None:
        rng = self.rng
        user = person["user"]
        # Where events land: the user id's profile once signed in, else a browser/app id.
        places: list[tuple[Key, str]] = [(a, "web") for a in person["anons"]]
        places += [(app_anon, "app") for _, app_anon in person["apps"]]
        if user is not None:
            places += [(user, "web")] * 3 + [(user, "app")] * len(person["apps"])
        seen: dict[tuple[str, str], list[Any]] = {}
        n_events = max(1, int(rng.expovariate(1 / count)) if count > 1 else 1)
        for e in range(n_events):
            key, channel = rng.choice(places)
            pid = self.profile_of[key]
            at = _t(rng)
            roll = rng.random()
            event_id = f"tev_g{self.index:010d}{person['tag'][-1]}{e:05d}"
            name = category = None
            properties: dict[str, Any] = {}
            traits: dict[str, Any] = {}
            if roll < 0.5:
                kind, name = "page", rng.choice(PAGES)
                properties = {
                    "path": f"/{name.lower().replace(' ', '-')}",
                    "referrer": "https://www.google.com/",
                }
            elif roll < 0.85:
                kind, name = "track", rng.choice(TRACKS)
                properties = {
                    "sku": f"SKU-{rng.randrange(100_000):05d}",
                    "price": rng.randrange(500, 20_000),
                    "currency": "EUR",
                }
            elif roll < 0.95:
                kind, name = "screen", rng.choice(SCREENS)
            else:
                kind = "identify"
                traits = {
                    "first_name": rng.choice(FIRST_NAMES),
                    "plan": rng.choice(["free", "plus"]),
                }
                if person["email"] is not None:
                    traits["email"] = person["email"][1]
            context = {
                "channel": channel,
                "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                "userAgent": rng.choice(AGENTS),
                "library": {"name": "analytics.js", "version": "4.1.0"},
                "locale": "en-GB",
            }
            self.rows["tracked_events"].append(
                (
                    pid,
                    event_id,
                    WRITE_KEY_ID,
                    f"msg_{event_id}",
                    kind,
                    name,
                    category,
                    user[1] if key == user else None,
                    key[1] if key[0] == "anonymous_id" else None,
                    json.dumps(properties),
                    json.dumps(traits),
                    json.dumps(context),
                    at,
                    at,
                    at,
                    at,
                    channel,
                    context["ip"],
                    context["userAgent"],
                )
            )
            for trait, value in traits.items():
                self.rows["profile_traits"].append(
                    (
                        pid,
                        f"trt_{event_id[4:]}{trait[:6]}",
                        trait,
                        json.dumps(value),
                        f"segment:identify:{channel}",
                        at,
                        event_id,
                    )
                )
            held = seen.setdefault((pid, channel), [at, at, 0])
            held[0], held[1], held[2] = min(held[0], at), max(held[1], at), held[2] + 1
        for (pid, channel), (first, last, n) in sorted(seen.items()):
            self.rows["channel_activity"].append((pid, channel, first, last, n))
        if user is None:
            return
        upid = self.profile_of[user]
        orders = int(rng.random() < 0.7) * rng.randrange(1, 12)
        if orders:
            times = sorted(_t(rng) for _ in range(orders))
            totals = [rng.randrange(1_000, 40_000) for _ in range(orders)]
            self.rows["profile_metrics"].append(
                (upid, "EUR", orders, sum(totals), 0, times[0], times[-1])
            )
            for n, (at, total) in enumerate(zip(times, totals, strict=True)):
                entry = f"tle_g{self.index:010d}{person['tag'][-1]}{n:03d}"
                self.rows["timeline_entries"].append(
                    (
                        upid,
                        entry,
                        f"evt_{entry[4:]}",
                        "order.placed",
                        at,
                        "web",
                        "order",
                        f"ord_{entry[4:]}",
                        f"Order of {total / 100:.2f} EUR",
                        json.dumps({"total_minor": total, "currency": "EUR"}),
                    )
                )
        for channel in ("email", "sms"):
            if rng.random() < 0.5:
                state = "granted" if rng.random() < 0.7 else "denied"
                at = _t(rng)
                self.rows["consents"].append(
                    (
                        upid,
                        channel,
                        "marketing",
                        state,
                        "single",
                        "web:signup",
                        at,
                        at,
                        f"cch_g{self.index:010d}{person['tag'][-1]}{channel}",
                    )
                )


def _worker(
    url: str,
    worker: int,
    workers: int,
    persons: int,
    identifiers: int,
    events_per_person: int,
    seed: int,
    done: Any,
) -> Stats:
    """Families ``worker``, ``worker + workers``, … in one transaction of this process."""
    stats = Stats()
    buffers: dict[str, list[tuple[Any, ...]]] = {name: [] for name in COLUMNS}
    with psycopg.connect(pg_dsn(url)) as conn:
        # Bulk load of a consistent data set: skip the per-row foreign key triggers.
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET synchronous_commit = off")

        def flush() -> None:
            with conn.cursor() as cur:
                for name in TABLE_ORDER:
                    rows = buffers[name]
                    if not rows:
                        continue
                    columns = ", ".join(f'"{c}"' for c in COLUMNS[name])
                    with cur.copy(f"COPY {name} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                    stats.rows[name] += len(rows)
                    rows.clear()

        family = worker
        while True:
            if identifiers:
                if stats.rows["identifiers"] + len(buffers["identifiers"]) >= identifiers:
                    break
            elif stats.persons >= persons:
                break
            size = 2 if random.Random(seed + family).random() < 0.03 else 1
            built = _Family(family, size, events_per_person, seed)
            for name, rows in built.rows.items():
                buffers[name].extend(rows)
            family += workers
            stats.families += 1
            stats.persons += size
            if stats.families % FLUSH_FAMILIES == 0:
                before = stats.rows["identifiers"]
                flush()
                with done.get_lock():
                    done.value += (
                        stats.rows["identifiers"] - before if identifiers else FLUSH_FAMILIES
                    )
        flush()
    return stats


def _run_worker(args: tuple[Any, ...]) -> Stats:
    return _worker(*args, _SHARED["done"])


_SHARED: dict[str, Any] = {}


def _init(done: Any) -> None:
    _SHARED["done"] = done


def generate(
    url: str,
    *,
    persons: int,
    events_per_person: int = 0,
    seed: int = 42,
    identifiers: int | None = None,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> Stats:
    """Write about ``persons`` people (or stop near ``identifiers`` identifiers) into the
    database at ``url`` with ``COPY``, from ``workers`` processes (generation in Python and
    the COPY in PostgreSQL overlap). Progress is counted in families, or identifiers."""
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Value("q", 0)
    total = identifiers or max(1, round(persons / 1.03))
    jobs = [
        (
            url,
            k,
            workers,
            -(-persons // workers),
            -(-(identifiers or 0) // workers),
            events_per_person,
            seed,
        )
        for k in range(workers)
    ]
    with ctx.Pool(workers, initializer=_init, initargs=(done,)) as pool:
        pending = pool.map_async(_run_worker, jobs)
        while not pending.ready():
            pending.wait(0.5)
            if progress:
                progress(min(done.value, total), total)
        results = pending.get()
    stats = Stats()
    for part in results:
        stats.families += part.families
        stats.persons += part.persons
        for name, count in part.rows.items():
            stats.rows[name] += count
    with psycopg.connect(pg_dsn(url), autocommit=True) as conn:
        conn.execute("ANALYZE")
    if progress:
        progress(total, total)
    return stats
