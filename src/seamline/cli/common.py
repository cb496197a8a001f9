"""Helpers shared by CLI commands: settings, the runtime, Rich console, error display."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from seamline.kit.errors import SeamlineError
from seamline.observability.logging import configure_logging
from seamline.runtime import Runtime, build_runtime
from seamline.settings import get_settings

console = Console()
err_console = Console(stderr=True)


@contextmanager
def runtime() -> Iterator[Runtime]:
    """Build the runtime for one command; business errors print cleanly and exit 1."""
    settings = get_settings()
    configure_logging(settings.resolved_log_format, settings.log_level)
    rt = build_runtime(settings)
    try:
        yield rt
    except SeamlineError as exc:
        err_console.print(f"[red]error[/red] {exc.code}: {exc.detail}")
        for field in exc.errors:
            err_console.print(f"  {field.path}: {field.message}")
        raise typer.Exit(1) from exc
    finally:
        rt.close()
