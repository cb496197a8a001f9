"""The HTTP ceiling of one server process: 64 keep-alive clients (asyncio, in a separate process,
like the flash-sale buyers) calling ``GET /healthz`` — no key, no database — on a running
``seamline serve``. Whatever an API call adds comes on top of this.

``python -m bench.http_ceiling [--clients 64] [--seconds 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _client(url: str, seconds: float, latencies: list[float]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            started = time.perf_counter()
            response = await http.get("/healthz")
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()


def clients_process(url: str, clients: int, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    latencies: list[float] = []

    async def main() -> None:
        await asyncio.gather(*(_client(url, seconds, latencies) for _ in range(clients)))

    started = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - started
    latencies.sort()
    out.put(
        (
            len(latencies) / elapsed,
            statistics.median(latencies) * 1000,
            latencies[int(len(latencies) * 0.99)] * 1000,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    port = _free_port()
    data = tempfile.mkdtemp(prefix="seamline-ceiling-")
    env = {**os.environ, "SEAMLINE_DATA_DIR": data, "SEAMLINE_PORT": str(port)}
    env["SEAMLINE_ENVIRONMENT"] = "production"  # JSON access logs, as deployed
    env.pop("SEAMLINE_DATABASE_URL", None)
    seamline = str(Path(sys.executable).with_name("seamline"))
    server = subprocess.Popen(
        [seamline, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        worker = mp.Process(target=clients_process, args=(url, args.clients, args.seconds, out))
        worker.start()
        worker.join()
        rate, p50, p99 = out.get()
        print(
            f"GET /healthz, {args.clients} clients, one server process: "
            f"{rate:,.0f} requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )
    finally:
        server.terminate()
        server.wait(15)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
