"""The benchmark: a fresh database, ``seamline serve`` per worker count, the raw baseline, then
the HTTP phases, each audited; ``seamline inventory verify`` at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.flash_sale.clients import Phase, buyers_process, drive, raw_process
from bench.flash_sale.constants import TTL_SECONDS
from bench.flash_sale.profile import statement_profile, summarize_profile
from bench.flash_sale.report import show, summary
from bench.flash_sale.seeding import Api, Store, flash_database
from bench.flash_sale.server import Server, machine_cpu, pyspy_exe, seamline_exe


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [seamline_exe(), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def run(
    postgres_url: str | None,
    *,
    buyers: int,
    units: int,
    raw_units: int,
    buckets: int,
    workers: list[int],
    idempotency: bool,
    profile: bool,
    console: Console,
) -> dict[str, Any]:
    if not postgres_url:
        console.print("[yellow]flash-sale needs PostgreSQL: pass --postgres URL[/yellow]")
        return {"skipped": "no PostgreSQL URL"}
    busy0, all0 = machine_cpu()
    time.sleep(1)
    busy1, all1 = machine_cpu()
    idle_busy = (busy1 - busy0) / max(1.0, all1 - all0)
    if idle_busy > 0.1:
        console.print(
            f"[yellow]warning[/yellow]: the machine is {idle_busy:.0%} busy before the benchmark "
            "starts; see the 'other' CPU column."
        )
    logs = Path(tempfile.mkdtemp(prefix="seamline-flash-"))
    data_dir = logs / "data"
    data_dir.mkdir()
    results: dict[str, Any] = {
        "buyers": buyers,
        "units_http": units,
        "units_raw": raw_units,
        "buckets": buckets,
        "ttl_seconds": TTL_SECONDS,
        "machine_busy_before": round(idle_busy, 3),
        "idempotency_key": idempotency,
        "logs": str(logs),
        "phases": [],
        "raw": [],
    }
    with flash_database(postgres_url) as url:
        env = {
            **os.environ,
            "SEAMLINE_DATABASE_URL": url,
            "SEAMLINE_DATA_DIR": str(data_dir),
            "SEAMLINE_ENVIRONMENT": "production",  # JSON logs at INFO, as deployed
        }
        for name in ("SEAMLINE_LOG_LEVEL", "SEAMLINE_LOG_FORMAT", "SEAMLINE_NATS_URL"):
            env.pop(name, None)
        for step in (("db", "upgrade"), ("keys", "create", "--name", "bench", "--kind", "secret")):
            done = _cli(env, *step)
            if done.returncode:
                raise RuntimeError(f"seamline {' '.join(step)}: {done.stderr}{done.stdout}")
        token = next(w for w in done.stdout.split() if w.startswith("sk_"))
        store = Store(url)
        locations: list[str] = []
        try:
            for n_workers in workers:
                server = Server(n_workers, env, logs)
                try:
                    server.start()
                    assert server.process is not None
                    api = Api(server.base, token)
                    results["features"] = api.features
                    if not locations:
                        locations = [api.location(n) for n in range(1, 4)]
                        results["raw"] = _raw_phases(
                            console, store, api, locations[0], raw_units, buyers, buckets
                        )
                        results["statements_per_reserve"] = statement_profile(
                            url, data_dir, token, locations[0], buckets
                        )
                    for phase in _phases(api, n_workers, locations, units, buckets):
                        results["phases"].append(
                            _http_phase(
                                console,
                                store,
                                server,
                                token,
                                phase,
                                buyers,
                                idempotency,
                                profile=profile and phase.key.endswith("one-row"),
                                logs=logs,
                            )
                        )
                    api.close()
                finally:
                    server.stop()
                results[f"server_log_w{n_workers}"] = server.log_summary()
            verify = _cli(env, "inventory", "verify")
            results["inventory_verify_exit"] = verify.returncode
            results["inventory_verify_output"] = (verify.stdout + verify.stderr)[-2000:]
        finally:
            store.close()
    show(console, results)
    return results


def _phases(
    api: Api, n_workers: int, locations: list[str], units: int, buckets: int
) -> list[Phase]:
    tag = f"w{n_workers}"
    phases = []
    one = api.variant(f"flash-{tag}-one")
    api.receive(locations[0], one, units)
    phases.append(Phase(f"{tag}-one-row", "one SKU, one row", one, units, [locations[0]]))
    if api.features["split"] and buckets > 1:
        hot = api.variant(f"flash-{tag}-split")
        api.split(hot, buckets)
        api.receive(locations[0], hot, units)
        label = f"one SKU, {buckets} buckets"
        phases.append(Phase(f"{tag}-split", label, hot, units, [locations[0]], buckets=buckets))
    spread = api.variant(f"flash-{tag}-spread")
    share, extra = divmod(units, len(locations))
    for n, location in enumerate(locations):
        api.receive(location, spread, share + (1 if n < extra else 0))
    phases.append(
        Phase(f"{tag}-3-locations", "3 locations, round-robin", spread, units, list(locations))
    )
    if api.features["channel"]:
        routed = api.variant(f"flash-{tag}-channel")
        for n, location in enumerate(locations):
            api.receive(location, routed, share + (1 if n < extra else 0))
        channel = api.channel(f"flash-{tag}")
        phases.append(
            Phase(
                f"{tag}-channel",
                "3 locations, server picks (channel_id)",
                routed,
                units,
                [None],
                channel_id=channel,
            )
        )
    return phases


def _http_phase(
    console: Console,
    store: Store,
    server: Server,
    token: str,
    phase: Phase,
    buyers: int,
    idempotency: bool,
    *,
    profile: bool,
    logs: Path,
) -> dict[str, Any]:
    assert server.process is not None
    before = store.counters()
    spy: subprocess.Popen[bytes] | None = None
    spy_out = logs / f"profile-{phase.key}.txt"
    if profile and (exe := pyspy_exe()):
        command = [
            exe,
            "record",
            "--format",
            "raw",
            "-o",
            str(spy_out),
            "-r",
            "100",
            # Only the thread holding the GIL: what one process can do is bounded by it.
            "--gil",
            "--nonblocking",
        ]
        if server.workers > 1:
            command.append("--subprocesses")
        spy = subprocess.Popen(
            [*command, "-p", str(server.process.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
    raw = drive(
        console,
        f"HTTP w{server.workers} {phase.label}",
        phase.units,
        buyers_process,
        (server.base, token, phase, buyers, idempotency),
        server.process.pid,
        store.backend_pids,
    )
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    backlog, drain = store.wait_drained()
    after = store.counters()
    held = len(raw["held"])
    extra: dict[str, Any] = {
        "workers": server.workers,
        "phase": phase.label,
        "audit": store.audit(phase.variant_id, phase.units, held),
        "outbox_backlog_at_sellout": backlog,
        "outbox_drain_s": round(drain, 1),
        "pg_per_reservation": {k: round((after[k] - before[k]) / max(1, held), 2) for k in after},
    }
    if spy is not None and spy_out.exists():
        extra["profile"] = summarize_profile(spy_out)
        extra["profile_file"] = str(spy_out)
    return summary(f"HTTP w{server.workers}: {phase.label}", raw, extra)


def _raw_phases(
    console: Console,
    store: Store,
    api: Api,
    location_id: str,
    units: int,
    threads: int,
    buckets: int,
) -> list[dict[str, Any]]:
    out = []
    labels = {
        "one": "raw psycopg: 1 row",
        "skip": f"raw psycopg: {buckets} rows, random pick, SKIP LOCKED",
        "random": f"raw psycopg: {buckets} rows, random pick, waits",
    }
    for layout, label in labels.items():
        rows = 1 if layout == "one" else max(2, buckets)
        variant_id = api.variant(f"raw-{layout}")
        store.raw_rows(location_id, variant_id, units, rows)
        raw = drive(
            console,
            label,
            units,
            raw_process,
            (store.dsn, layout, location_id, variant_id, threads),
            None,
            store.backend_pids,
        )
        on_hand, reserved = store.drop_raw_rows(variant_id)
        held = len(raw["held"])
        out.append(
            summary(
                label,
                raw,
                {
                    "rows": rows,
                    "audit": {
                        "received": units,
                        "on_hand": on_hand,
                        "reserved": reserved,
                        "oversold": max(0, reserved - on_hand, held - units),
                        "unsold": on_hand - reserved,
                    },
                },
            )
        )
    return out
