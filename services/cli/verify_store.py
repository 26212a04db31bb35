"""``tessera verify-store``: check the store's invariants and report every violation.

Reads any Tessera database (``--database-url``, else ``TESSERA_DATABASE_URL``, else
``var/tessera.db``) read-only, never migrating it, and checks the invariants of
:mod:`services.reliability`: per-order hash chains, event replay, submissions (never
unapproved, never twice), fills exactly once, the ledger; with ``--venue-sim URL`` also
the store against the venue simulator's own record of orders, trades and placements.

Exit codes: 0 no violation, 4 violations found (each printed), 1 the store (or the
venue) could not be read, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from .client import EXIT_ERROR, EXIT_OK, err

EXIT_VIOLATIONS = 4


def add_verify_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default="", metavar="URL",
                        help="the store (default: TESSERA_DATABASE_URL, else var/tessera.db)")
    parser.add_argument("--require-terminal", action="store_true",
                        help="also report every order still working (SUBMITTED, ACCEPTED, PARTIALLY_FILLED, "
                             "PENDING_CANCEL): for a store that should have settled")
    parser.add_argument("--in-doubt-after", type=float, default=None, metavar="SECONDS",
                        help="also report orders in doubt (SUBMITTED, no venue answer) for longer than this")
    parser.add_argument("--no-ledger", action="store_true", help="skip the ledger and position checks")
    parser.add_argument("--require-ledger", action="store_true",
                        help="also report trades the ledger does not hold yet (for a store whose Risk replicas "
                             "have caught up; while orders flow, Risk applies new trades within milliseconds)")
    parser.add_argument("--venue-sim", default="", metavar="URL",
                        help="also check the store against a venue simulator's orders, trades and placements")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def read_only_engine(url: str) -> Engine:
    """An engine that cannot write: SQLite opened read-only, PostgreSQL read-only transactions.

    On SQLite a transaction begins with ``BEGIN`` (SQLAlchemy's, not the driver's, which
    starts none before a SELECT): the reads of one transaction see one snapshot of the
    store, as on PostgreSQL under ``REPEATABLE READ``."""
    from services.store.engine import make_engine, normalize_url

    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if not path or path == ":memory:" or not Path(path).exists():
            raise FileNotFoundError(f"no SQLite database at {path or '(none)'}")
        engine = create_engine(f"sqlite:///file:{Path(path).resolve()}?mode=ro&uri=true")

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # BEGIN is SQLAlchemy's (below), not the driver's

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN")

        return engine
    return make_engine(parsed, connect_args={"options": "-c default_transaction_read_only=on"},
                       pool_size=1, max_overflow=1)


def _fetch(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read() or b"null")


def venue_record(base_url: str) -> Any:
    """The venue simulator's orders, trades and placement counts."""
    from services.reliability import VenueRecord

    base = base_url.rstrip("/")
    return VenueRecord(orders=_fetch(base + "/_sim/orders"), trades=_fetch(base + "/_sim/trades"),
                       placements=_fetch(base + "/_sim/placements"))


def verify(url: str, *, require_terminal: bool = False, in_doubt_after: float | None = None,
           ledger: bool = True, require_ledger: bool = False, venue_sim: str = "") -> Any:
    """Run every check on the store at ``url``; returns the :class:`~services.reliability.Report`.

    Raises
    ------
    RuntimeError
        The database is not at the newest schema revision (nothing to check against).
    """
    from alembic.script import ScriptDirectory

    from services.reliability import check_against_venue, check_store
    from services.store.migrate import alembic_config, current_revision

    engine = read_only_engine(url)
    try:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        at = current_revision(engine)
        if at != head:
            raise RuntimeError(f"the store is at schema revision {at}, not {head}: migrate it first "
                               "(python -m services.store)")
        report = check_store(engine, require_terminal=require_terminal, in_doubt_after=in_doubt_after, ledger=ledger,
                             require_ledger=require_ledger)
        if venue_sim:
            check_against_venue(engine, venue_record(venue_sim), report=report)
        return report
    finally:
        engine.dispose()


def cmd_verify_store(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from services.store.engine import database_url, safe_url

    url = args.database_url or database_url()
    try:
        report = verify(url, require_terminal=args.require_terminal, in_doubt_after=args.in_doubt_after,
                        ledger=not args.no_ledger, require_ledger=args.require_ledger, venue_sim=args.venue_sim)
    except (SQLAlchemyError, OSError, RuntimeError, ValueError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        err(f"cannot verify {safe_url(make_url(url)) if '://' in url else url}: {detail}")
        return EXIT_ERROR
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(f"store: {safe_url(url)}")
        print(f"checked {report.orders} orders, {report.events} events, {report.trades} trades "
              f"({report.open_orders} orders still working, {report.ledger_pending} trades not in the ledger yet)")
        print(f"store digest: {report.digest}")
        for violation in report.violations:
            print(f"  {violation}")
        if report.ok:
            print("no violations")
        else:
            counts = ", ".join(f"{kind} {count}" for kind, count in report.kinds().items())
            print(f"{len(report.violations)} violations: {counts}")
    sys.stdout.flush()
    return EXIT_OK if report.ok else EXIT_VIOLATIONS
