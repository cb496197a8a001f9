"""The ``seamline`` command line (Typer + Rich)."""
