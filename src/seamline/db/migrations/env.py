"""Alembic environment: the same migrations on SQLite (batch mode) and PostgreSQL."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from seamline.db.engine import Database
from seamline.db.models import metadata

config = context.config


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Our column types render by their import path so migrations import them explicitly.
    if type_ == "type" and obj.__class__.__module__.startswith("seamline."):
        autogen_context.imports.add(f"import {obj.__class__.__module__}")
        return f"{obj.__class__.__module__}.{obj.__class__.__name__}()"
    return False


def _include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    # Dialect-only indexes created by hand in migrations (pg_trgm GIN indexes) are not in the
    # models; they must not count as drift.
    return not (type_ == "index" and name is not None and name.endswith("_trgm"))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    db: Database | None = config.attributes.get("database")
    if db is None:
        db = Database(config.get_main_option("sqlalchemy.url") or "")
    with db.engine.connect() as connection:
        _run(connection)
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run()
