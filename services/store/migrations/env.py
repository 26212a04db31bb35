"""Alembic environment of the store.

Normally run through :func:`services.store.migrate.upgrade`, which hands over an open
connection in ``config.attributes["connection"]`` (already in a transaction, holding
the migration lock). Without one (``alembic.command.downgrade``, say), it connects to
``sqlalchemy.url`` or, failing that, to :func:`services.store.engine.database_url`, and
runs every revision of the command in one transaction on both backends.
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
        # SQLite's DDL is transactional here too (the engine emits BEGIN itself, see
        # services.store.engine): every revision of a run in one transaction, as on
        # PostgreSQL, so a run that fails or refuses half-way keeps nothing of it.
        # (Alembic's default for SQLite is a transaction per revision.)
        transactional_ddl=True,
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
