"""Seamline: an omnichannel customer-experience engine."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("seamline")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
