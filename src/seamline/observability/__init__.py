"""Logging, request ids and Prometheus metrics."""
