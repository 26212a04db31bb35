"""Bring a database's schema to the newest migration.

:func:`upgrade` is idempotent and safe to call at every service start. The whole
upgrade runs in one transaction (both backends have transactional DDL here, see
:mod:`services.store.engine`); on PostgreSQL it first takes a transaction-scoped
advisory lock, so replicas starting together migrate one after the other and the
later ones find nothing to do. On SQLite ``BEGIN IMMEDIATE`` serialises them the same way.

Command line: ``python -m services.store [--url URL] [--revision REV]``.

A new revision: ``alembic.command.revision(alembic_config(), "message", autogenerate=True)``
against a database at head, then review and hand-edit it; the migrations test checks
that the result matches the models on both backends.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from .engine import database_url, make_engine, safe_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Key of the PostgreSQL advisory lock held while migrating ("tessera" in ASCII).
MIGRATION_LOCK_KEY = 0x7465737365726100


def alembic_config() -> Config:
    """An Alembic configuration built in code: no ``alembic.ini`` needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine_or_url: Engine | str | URL | None = None, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` and return the revision it is then at.

    Parameters
    ----------
    engine_or_url
        An engine (left open) or a URL (an engine is made and disposed);
        ``None`` means :func:`services.store.engine.database_url`.
    revision
        Target revision, ``"head"`` by default.

    Raises
    ------
    sqlalchemy.exc.OperationalError
        The database cannot be reached.
    """
    if isinstance(engine_or_url, Engine):
        return _upgrade(engine_or_url, revision)
    engine = make_engine(engine_or_url or database_url())
    try:
        return _upgrade(engine, revision)
    finally:
        engine.dispose()


def _upgrade(engine: Engine, revision: str) -> str | None:
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        return MigrationContext.configure(connection).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, ``None`` before the first migration."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.store", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="database URL (default: TESSERA_DATABASE_URL or var/tessera.db)")
    parser.add_argument("--revision", default="head", help="target revision (default: head)")
    args = parser.parse_args(argv)
    url = args.url or database_url()
    at = upgrade(url, args.revision)
    print(f"{safe_url(url)} is at revision {at}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
