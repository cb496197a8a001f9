"""``seamline customers …`` and ``seamline identity …``: the command groups.

The commands live beside what they do — ``customers_import.py`` (CSV import),
``customers_privacy.py`` (export, erase), ``identity_rebuild.py`` (recompute clusters) — and
register themselves on these groups when ``main.py`` imports them.
"""

from __future__ import annotations

import typer

customers_app = typer.Typer(help="Customers: import, export and erase.", no_args_is_help=True)
identity_app = typer.Typer(help="The identity graph: rebuild clusters.", no_args_is_help=True)
