"""What a process holds for its lifetime: the database, the secret box, the stream, the worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from seamline.api.idempotency import purge_expired
from seamline.db.engine import Database
from seamline.events import service as events
from seamline.events.stream import NatsStream
from seamline.events.webhooks import WebhookSender
from seamline.events.worker import Worker
from seamline.identity import privacy, profiles
from seamline.kit.crypto import SecretBox
from seamline.payments import setup as payment_setup
from seamline.settings import Settings
from seamline.staff.service import purge_ended_sessions


@dataclass
class Runtime:
    settings: Settings
    db: Database
    box: SecretBox
    stream: NatsStream | None = None
    _senders: list[WebhookSender] = field(default_factory=list)

    def worker(self) -> Worker:
        sender = WebhookSender(
            self.box,
            timeout=self.settings.webhook_timeout_seconds,
            allow_private=self.settings.webhook_allow_private_networks,
        )
        self._senders.append(sender)
        return Worker(
            self.db,
            batch_size=self.settings.worker_batch_size,
            lease=timedelta(seconds=self.settings.worker_lease_seconds),
            webhooks=sender,
            stream=self.stream,
            housekeeping=(purge_expired, self._prune_events, purge_ended_sessions),
        )

    def _prune_events(self, db: Database) -> int:
        with db.transaction() as session:
            return events.prune_delivered(
                session, older_than=timedelta(days=self.settings.event_retention_days)
            )

    def close(self) -> None:
        for sender in self._senders:
            sender.close()
        if self.stream is not None:
            self.stream.close()
        self.db.dispose()


def build_runtime(settings: Settings) -> Runtime:
    stream = NatsStream(settings.nats_url) if settings.nats_url else None
    db = Database(settings.resolved_database_url, stream_enabled=stream is not None)
    privacy.configure(db, settings.resolved_secret_key)  # keys the erased-identifier hashes
    profiles.configure_strategies(settings.trait_strategies)
    payment_setup.configure(settings)
    return Runtime(settings, db, SecretBox(settings.resolved_secret_key), stream)
