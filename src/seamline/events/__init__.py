"""Outbox, worker, durable timers, webhook delivery and the NATS relay."""
