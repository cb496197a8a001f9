"""Benchmarks: ``python -m bench`` (or ``make bench``). Figures go to docs/benchmarks.md."""
