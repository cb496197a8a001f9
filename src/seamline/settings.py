"""Runtime settings, read from ``SEAMLINE_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

import os
import secrets
import time
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEAMLINE_", env_file=".env", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Field(
        default=Path(".seamline"), description="Where the embedded database lives."
    )
    database_url: str | None = Field(default=None, description="Defaults to SQLite in data_dir.")
    nats_url: str | None = None
    secret_key: str | None = Field(default=None, description="Generated into data_dir if unset.")
    log_format: Literal["console", "json"] | None = None
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1_048_576
    plugins: list[str] = Field(default_factory=list, description="Modules imported at start-up.")
    trait_strategies: dict[str, Literal["latest", "first", "non_empty"]] = Field(
        default_factory=dict,
        description='Per-trait strategy overrides, as JSON: {"plan": "non_empty"}.',
    )
    ingest_mode: Literal["sync", "queued"] = Field(
        default="sync",
        description="`/v1/*` tracking calls: resolve before answering (sync), or answer after "
        "storing the validated calls in an inbox the worker drains (queued).",
    )
    worker_poll_seconds: float = 0.5
    worker_batch_size: int = 50
    worker_lease_seconds: float = 60.0
    idempotency_ttl_hours: int = 24
    event_retention_days: int = Field(
        default=30, ge=1, description="Delivered events older than this are pruned."
    )
    idempotency_lock_seconds: float = 60.0
    webhook_timeout_seconds: float = 10.0
    checkout_hold_seconds: int = Field(
        default=900, ge=60, le=86_400, description="How long checkout holds stock while paying."
    )
    pickup_hold_days: int = Field(
        default=7, ge=1, le=60, description="Uncollected pick-up orders expire after this."
    )
    test_payments: bool | None = Field(
        default=None,
        description="Enable the `test` payment provider (default: on except in production).",
    )
    test_payments_webhook_secret: str | None = Field(
        default=None, description="Signs the test provider's webhooks (derived if unset)."
    )
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    webhook_allow_private_networks: bool = Field(
        default=False,
        description="Deliver webhooks to loopback/private/link-local addresses (off by default).",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'seamline.db').resolve()}"

    @property
    def resolved_log_format(self) -> str:
        if self.log_format:
            return self.log_format
        return "json" if self.environment == "production" else "console"

    @property
    def resolved_secret_key(self) -> str:
        """The configured key, or one generated once and kept in ``data_dir/secret_key``."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            # Created exclusively and private from the first byte: two processes starting on a
            # fresh data dir end up with the same key, never one each.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        for _ in range(50):  # another process may be between creating and writing it
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.01)
        raise RuntimeError(f"{path} is empty")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
