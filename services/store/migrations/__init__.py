"""Alembic migrations of the store (run them with :func:`services.store.migrate.upgrade`)."""
