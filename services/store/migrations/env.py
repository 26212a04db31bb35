"""Alembic environment of the store.

Normally run through :func:`services.store.migrate.upgrade`, which hands over an open
connection in ``config.attributes["connection"]`` (already in a transaction, holding
the migration lock). Without one, it connects to ``sqlalchemy.url`` or, failing that,
to :func:`services.store.engine.database_url`.
"""

from __future__ import annotations

from alembic import context

from services.store.engine import database_url, make_engine
from services.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=True,  # SQLite has almost no ALTER TABLE; batch mode copies tables
        **kwargs,
    )


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url") or database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or database_url())
    try:
        with engine.connect() as connection:
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
