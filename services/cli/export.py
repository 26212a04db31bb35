"""``tessera export``: orders, events and trades of a time window, for audit, hash chains verified.

Reads the store read-only (``--database-url``, else ``TESSERA_DATABASE_URL``, else
``var/tessera.db``), like ``tessera verify-store``, and writes a directory of CSV or
Parquet files with a manifest (:mod:`services.reliability.export` says what is in it).
Refuses, writing nothing, when an exported order does not verify against its hash chain
(the chain itself, or its row or trades against its events).

Exit codes: 0 exported, 4 refused for orders that do not verify (listed), 1 the store could not
be read or the export written, 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from .client import EXIT_ERROR, EXIT_OK, UsageError, err, parse_time
from .verify_store import EXIT_VIOLATIONS, read_only_engine


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", required=True, metavar="TIME",
                        help="start of the window, inclusive: an ISO 8601 date or time (UTC unless it says)")
    parser.add_argument("--to", dest="end", required=True, metavar="TIME",
                        help="end of the window, exclusive (2026-02-01 for all of January)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv",
                        help="csv (default) or parquet (needs pyarrow: the export extra)")
    parser.add_argument("--out", default="", metavar="DIR",
                        help="the directory to create (default tessera-export-FROM-TO in the current directory)")
    parser.add_argument("--database-url", default="", metavar="URL",
                        help="the store (default: TESSERA_DATABASE_URL, else var/tessera.db)")


def _stamp(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def cmd_export(args: argparse.Namespace) -> int:
    from alembic.script import ScriptDirectory
    from sqlalchemy.exc import SQLAlchemyError

    from services.reliability.export import ChainBroken, ExportError, export, require_format
    from services.store.engine import database_url, safe_url
    from services.store.migrate import alembic_config, current_revision

    start, end = parse_time(args.start), parse_time(args.end)
    if not start < end:
        raise UsageError(f"--from ({args.start}) must be before --to ({args.end})")
    try:
        require_format(args.format)
    except ExportError as error:
        err(str(error))
        return EXIT_ERROR
    out = Path(args.out or f"tessera-export-{_stamp(start)}-{_stamp(end)}")
    url = args.database_url or database_url()
    shown = safe_url(make_url(url)) if "://" in url else url
    try:
        engine = read_only_engine(url)
    except (SQLAlchemyError, OSError, ValueError) as error:
        err(f"cannot read {shown}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
        return EXIT_ERROR
    try:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        at = current_revision(engine)
        if at != head:
            err(f"cannot export {shown}: the store is at schema revision {at}, not {head}: migrate it first "
                "(python -m services.store)")
            return EXIT_ERROR
        summary = export(engine, start, end, args.format, out)
    except ChainBroken as error:
        err(str(error))
        return EXIT_VIOLATIONS
    except ExportError as error:
        err(str(error))
        return EXIT_ERROR
    except (SQLAlchemyError, OSError) as error:
        err(f"cannot export {shown}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
        return EXIT_ERROR
    finally:
        engine.dispose()
    print(f"store: {shown}")
    utc = dt.timezone.utc
    print(f"window: {start.astimezone(utc).isoformat()} to {end.astimezone(utc).isoformat()} "
          "(orders with an event in it, with their whole history)")
    print(f"exported {summary.rows['orders']} orders, {summary.rows['order_events']} events, "
          f"{summary.rows['trades']} trades to {summary.directory}/ ({args.format.upper()}, with manifest.json)")
    print(f"hash chains verified: {summary.chains_verified}; digest of their heads: {summary.digest}")
    sys.stdout.flush()
    return EXIT_OK


__all__ = ["add_export_arguments", "cmd_export"]
