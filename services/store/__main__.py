"""``python -m services.store``: bring the database schema to head (see :mod:`.migrate`)."""

from .migrate import main

if __name__ == "__main__":
    raise SystemExit(main())
