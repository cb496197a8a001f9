"""``seamline serve`` as a subprocess, its log parsing, and /proc readings of a process tree
(memory, CPU) and of the whole machine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# -- /proc: process trees, memory, CPU ------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def _status_kb(pid: int, field_name: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def tree_memory_kb(pid: int) -> dict[int, tuple[int, int]]:
    """(RSS, PSS) per process of a tree. RSS counts shared pages in every process that maps
    them; PSS splits them between those processes, so its sum is what the tree costs."""
    out = {}
    for p in _tree(pid):
        pss = 0
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
        out[p] = (_status_kb(p, "VmRSS"), pss)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process tree so far (from /proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in _tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


# -- the server -----------------------------------------------------------------------------


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """``seamline serve`` as a subprocess, its logs in files."""

    workers: int
    env: dict[str, str]
    logs: Path
    port: int = field(default_factory=_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr_path(self) -> Path:
        return self.logs / f"serve-w{self.workers}.stderr"

    def start(self) -> None:
        command = [seamline_exe(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        with (
            open(self.logs / f"serve-w{self.workers}.stdout", "wb") as out,
            open(self.stderr_path, "wb") as err,
        ):
            self.process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=err, start_new_session=True
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"seamline serve exited:\n{self.stderr_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    if self.workers > 1:
                        time.sleep(2)  # let every process finish starting
                    return
            time.sleep(0.2)
        raise RuntimeError(f"seamline serve did not answer:\n{self.stderr_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def stderr_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_summary(self) -> dict[str, Any]:
        """Statuses of the access log lines and every error line in the server's stderr."""
        statuses: Counter[str] = Counter()
        errors: list[str] = []
        with contextlib.suppress(OSError):
            for entry in _log_entries(self.stderr_path.read_text(errors="replace")):
                if isinstance(entry, str):
                    errors.append(entry[:300])
                elif entry.get("event") == "request":
                    statuses[str(entry.get("status"))] += 1
                elif entry.get("level") in ("error", "critical", "exception", "warning"):
                    errors.append(json.dumps(entry)[:600])
        return {"statuses": dict(statuses), "error_lines": len(errors), "errors": errors[:20]}


def _log_entries(text: str) -> Iterator[dict[str, Any] | str]:
    """JSON log objects, also when several processes' lines run together on one line (each
    process writes a line and its newline separately); any other non-empty text as is."""
    decoder = json.JSONDecoder()
    for line in text.splitlines():
        rest = line.strip()
        while rest:
            try:
                entry, end = decoder.raw_decode(rest)
            except ValueError:
                if not rest.startswith(("INFO", "Seamline")):
                    yield rest
                break
            if isinstance(entry, dict):
                yield entry
            rest = rest[end:].lstrip()


def seamline_exe() -> str:
    beside = Path(sys.executable).parent / "seamline"
    return str(beside) if beside.exists() else (shutil.which("seamline") or "seamline")


def pyspy_exe() -> str | None:
    return os.environ.get("PY_SPY") or shutil.which("py-spy")
