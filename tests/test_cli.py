"""The commands a newcomer and an operator type: demo, serve, db."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from seamline import __version__
from seamline.cli.main import app
from seamline.settings import Settings


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"seamline {__version__}"


def test_db_commands(cli_env: dict[str, str]) -> None:
    runner = CliRunner()
    current = runner.invoke(app, ["db", "current"])
    assert current.exit_code == 0, current.output
    assert "up to date" in current.output
    down = runner.invoke(app, ["db", "downgrade", "base"])
    assert down.exit_code == 0, down.output
    assert "behind" in runner.invoke(app, ["db", "current"]).output
    up = runner.invoke(app, ["db", "upgrade"])
    assert up.exit_code == 0, up.output
    assert "up to date" in runner.invoke(app, ["db", "current"]).output


def test_demo_check_builds_the_demo_and_verifies_it(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small crowd keeps the suite quick; .ci/run also runs the full-size `seamline demo --check`.
    monkeypatch.setenv("SEAMLINE_DEMO_CUSTOMERS", "40")
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--check"])
    assert first.exit_code == 0, first.output
    assert "demo check passed" in first.output
    # Re-running reuses the data instead of failing on existing channels.
    again = runner.invoke(app, ["demo", "--check"])
    assert again.exit_code == 0, again.output
    listed = runner.invoke(app, ["channels", "list"])
    assert "store-soho" in listed.output
    assert "instagram" in listed.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_starts_a_server_a_user_can_open(tmp_path: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the default embedded set-up is what a newcomer runs")
    port = _free_port()
    env = {**os.environ, "SEAMLINE_DATA_DIR": str(tmp_path / "fresh"), "SEAMLINE_PORT": str(port)}
    env.pop("SEAMLINE_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "seamline", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                home = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert home.status_code == 200
        assert "Seamline" in home.text
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.json()["checks"]["database"] == "ok"
        assert (tmp_path / "fresh" / "seamline.db").exists(), "created on first run"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_serve_with_several_processes(tmp_path: Path, settings: Settings, backend: str) -> None:
    """``serve --workers 2``: migrates, then uvicorn's manager runs two app processes on one
    port; both answer, and SIGTERM stops them all."""
    if backend != "postgres":
        pytest.skip("several server processes are meant for PostgreSQL")
    port = _free_port()
    env = {
        **os.environ,
        "SEAMLINE_DATA_DIR": str(tmp_path / "data"),
        "SEAMLINE_DATABASE_URL": settings.resolved_database_url,
        "SEAMLINE_SECRET_KEY": settings.resolved_secret_key,
        "SEAMLINE_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "seamline", "serve", "--workers", "2", "--no-worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert ready.json()["checks"]["database"] == "ok"
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) >= 2, children  # the two app processes (plus uvicorn's helper)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=20) is not None
        finally:
            if proc.poll() is None:
                proc.kill()


def test_bench_runs_the_source_trees_benchmarks() -> None:
    from seamline.cli.bench import source_tree

    runner = CliRunner()
    refused = runner.invoke(app, ["bench", "nope"])
    assert refused.exit_code == 2
    assert "checkout" in refused.output
    # From this checkout (installed with pip install -e), the benchmarks are found.
    root = source_tree()
    assert root is not None
    assert (root / "bench" / "checkout").is_dir()
