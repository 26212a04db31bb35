"""Export for audit: orders, their hash-chained events and their trades, verified on the way out.

:func:`export` selects every order with activity in a time window (an event whose
``event_time`` is in ``[start, end)``; an order's creation is its first event, so every
order placed in the window is there) and writes, for those orders, the order rows, their
**complete** event chains and their trades: each exported chain runs from the order's
first event, so it verifies from the export alone, whatever the window. The whole export
is read in one transaction (a snapshot: ``REPEATABLE READ`` on PostgreSQL, SQLite's read
transaction), so an order written meanwhile cannot appear half-exported.

Every exported order is verified as it is read: its chain
(:func:`~services.reliability.invariants.chain_violations`: each event against its hash,
each link, the head on the order row), and its row and trades against its chained events
(:func:`~services.reliability.invariants.row_violations`: the status, filled quantity,
average price, fills owed and last sequence the events replay to; each trade its fill
event's). One order that does not verify and nothing is exported: the files are written to a temporary directory next to the
target and removed, and :class:`ChainBroken` lists what is wrong. Otherwise the directory
holds ``orders``, ``order_events`` and ``trades`` (``.csv`` or ``.parquet``) and
``manifest.json``: the window, the selection rule, per file its rows and SHA-256, the
number of chains verified, and the digest of the exported chain heads (the store digest
of :mod:`services.store.chain`, over these orders).

Values: decimals exact (CSV: the canonical plain text; Parquet: ``decimal128(38, 18)``),
times UTC (CSV: ISO 8601 with microseconds and ``Z``; Parquet: ``timestamp[us, UTC]``),
JSON columns as the store's JSON text, booleans ``true``/``false``, NULL as an empty
CSV cell (a null in Parquet). A CSV text cell that a spreadsheet would take for a formula
(``=``, ``+``, ``-``, ``@``, a tab or a carriage return first; or ``'`` first) is written
with one ``'`` before it (:data:`CSV_TEXT_RULE`, also in the manifest). Columns are the tables' own, in their order. Parquet needs
``pyarrow`` (the ``export`` extra).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, Protocol

from sqlalchemy import JSON, Boolean, Engine, Integer, select
from sqlalchemy.engine import Connection

from services.store.chain import store_digest
from services.store.codec import json_text
from services.store.engine import SQLITE_BEGIN_OPTION
from services.store.models import order_events_table, orders_table, trades_table
from services.store.types import DecimalString, UTCDateTime

from .invariants import Violation, chain_violations, row_violations

FORMATS = ("csv", "parquet")
#: Orders read (with their events and trades) per round trip.
PAGE = 500
#: Violations listed in the error when chains are broken (the count says how many there are).
SHOWN = 20
TABLES = {"orders": orders_table, "order_events": order_events_table, "trades": trades_table}
SELECTION = ("every order with an event in [from, to), with its complete event chain (from its first event) "
             "and all its trades")


class ExportError(Exception):
    """The export cannot be made (bad arguments, a missing dependency, an unwritable target)."""


class ChainBroken(ExportError):
    """An exported order does not verify against its hash chain (the chain itself, or its
    row or trades against its events): nothing was exported."""

    def __init__(self, violations: list[Violation], orders: int) -> None:
        self.violations = violations
        shown = "\n".join(f"  {v}" for v in violations[:SHOWN])
        more = f"\n  ... and {len(violations) - SHOWN} more" if len(violations) > SHOWN else ""
        super().__init__(
            f"refusing to export: {orders} order(s) do not verify against their hash chains (an event edited, "
            f"inserted or deleted, or an order or trade row changed behind its events' back, outside the "
            f"repository); nothing was written:\n{shown}{more}\n"
            "tessera verify-store reports the whole store")


@dataclasses.dataclass
class Summary:
    directory: Path
    rows: dict[str, int]
    chains_verified: int
    digest: str


# -- values as each format writes them ------------------------------------------------------------
def _kind(column: Any) -> str:
    kind = column.type
    if isinstance(kind, DecimalString):
        return "decimal"
    if isinstance(kind, UTCDateTime):
        return "time"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, Integer):  # BigInteger too
        return "int"
    if isinstance(kind, JSON):
        return "json"
    return "text"


#: What a spreadsheet may take a cell beginning with for a formula (or a formula's start):
#: a text cell beginning with one of these, or with the apostrophe that marks it, is
#: written with one apostrophe before it, so it is shown as text and never run.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
CSV_TEXT_RULE = ("a text cell beginning with =, +, -, @, a tab, a carriage return or ' is written with one ' "
                 "before it (a spreadsheet shows it as text, never as a formula): drop that ' to read the value")


def _csv_cell(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "decimal":
        return format(value, "f")
    if kind == "time":
        return value.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if kind == "bool":
        return "true" if value else "false"
    if kind == "json":
        return json_text(value) or ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class Writer(Protocol):
    def write(self, rows: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class CsvWriter:
    def __init__(self, path: Path, table: Any) -> None:
        self.columns = [(c.name, _kind(c)) for c in table.columns]
        self.file = path.open("w", newline="", encoding="utf-8")
        self.csv = csv.writer(self.file)
        self.csv.writerow([name for name, _ in self.columns])

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.csv.writerows([_csv_cell(kind, row[name]) for name, kind in self.columns] for row in rows)

    def close(self) -> None:
        self.file.close()


class ParquetWriter:
    def __init__(self, path: Path, table: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"decimal": pa.decimal128(38, 18), "time": pa.timestamp("us", tz="UTC"), "bool": pa.bool_(),
                 "int": pa.int64(), "json": pa.string(), "text": pa.string()}
        self.pa = pa
        self.columns = [(c.name, _kind(c)) for c in table.columns]
        self.schema = pa.schema([pa.field(name, types[kind], nullable=c.nullable)
                                 for (name, kind), c in zip(self.columns, table.columns)])
        self.writer = pq.ParquetWriter(str(path), self.schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        arrays = {}
        for name, kind in self.columns:
            values = [row[name] for row in rows]
            if kind == "json":
                values = [None if v is None else json_text(v) for v in values]
            elif kind == "decimal":
                values = [None if v is None else Decimal(v) for v in values]
            arrays[name] = values
        self.writer.write_table(self.pa.table(arrays, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


def _writer(fmt: str, path: Path, table: Any) -> Writer:
    return CsvWriter(path, table) if fmt == "csv" else ParquetWriter(path, table)


def require_format(fmt: str) -> None:
    """Raises :class:`ExportError` for an unknown format, or Parquet without pyarrow."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: csv or parquet")
    if fmt == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ExportError("--format parquet needs pyarrow: pip install 'tessera[export]' "
                              "(or export --format csv)") from None


# -- reading -----------------------------------------------------------------------------------
def _order_pages(connection: Connection, start: dt.datetime, end: dt.datetime) -> Iterator[list[str]]:
    """The ids of the orders with an event in ``[start, end)``, in order, :data:`PAGE` at a
    time: one read of the window, streamed (a server-side cursor on PostgreSQL, SQLite's
    own stepping), not one read of it per page."""
    events = order_events_table
    ids = connection.execute(
        select(events.c.order_id).where(events.c.event_time >= start, events.c.event_time < end)
        .group_by(events.c.order_id).order_by(events.c.order_id),
        execution_options={"stream_results": True, "max_row_buffer": PAGE},
    )
    try:
        for page in ids.scalars().partitions(PAGE):
            yield list(page)
    finally:
        ids.close()


def _rows(connection: Connection, table: Any, order_ids: list[str], *order_by: Any) -> list[dict[str, Any]]:
    statement = select(table).where(table.c.order_id.in_(order_ids)).order_by(*order_by)
    return [dict(row) for row in connection.execute(statement).mappings()]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export(engine: Engine, start: dt.datetime, end: dt.datetime, fmt: str, directory: Path) -> Summary:
    """Write the export of ``[start, end)`` into ``directory`` (which must not exist yet).

    Raises
    ------
    ChainBroken
        An exported order's hash chain does not verify; nothing is written.
    ExportError
        Bad window or format, pyarrow missing for Parquet, ``directory`` exists.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ExportError("--from and --to need a time zone (UTC is assumed by the command line)")
    if not start < end:
        raise ExportError(f"--from ({start.isoformat()}) must be before --to ({end.isoformat()})")
    require_format(fmt)
    directory = Path(directory)
    if directory.exists():
        raise ExportError(f"{directory} exists: choose a new directory (an export is never written over another)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        summary = _export_into(engine, start, end, fmt, staging)
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.directory = directory
    return summary


def _export_into(engine: Engine, start: dt.datetime, end: dt.datetime, fmt: str, staging: Path) -> Summary:
    writers = {name: _writer(fmt, staging / f"{name}.{fmt}", table) for name, table in TABLES.items()}
    rows = dict.fromkeys(TABLES, 0)
    heads: list[tuple[str, str | None]] = []
    broken: list[Violation] = []
    broken_orders: set[str] = set()
    # One snapshot, taking no write lock: on SQLite a deferred transaction (an engine of the
    # store's own begins IMMEDIATE, which would hold every writer off while the export runs).
    options = ({"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql"
               else {SQLITE_BEGIN_OPTION: "DEFERRED"})
    try:
        with engine.connect().execution_options(**options) as connection, connection.begin():
            for order_ids in _order_pages(connection, start, end):
                orders = _rows(connection, orders_table, order_ids, orders_table.c.order_id)
                events = _rows(connection, order_events_table, order_ids, order_events_table.c.order_id,
                               order_events_table.c.sequence)
                trades = _rows(connection, trades_table, order_ids, trades_table.c.order_id, trades_table.c.id)
                by_order: dict[str, list[dict[str, Any]]] = {}
                for event in events:
                    by_order.setdefault(event["order_id"], []).append(event)
                traded: dict[str, list[dict[str, Any]]] = {}
                for trade in trades:
                    traded.setdefault(trade["order_id"], []).append(trade)
                for order in orders:
                    chained = by_order.get(order["order_id"], [])
                    wrong = chain_violations(order, chained) + row_violations(
                        order, chained, traded.get(order["order_id"], []))
                    if wrong:
                        broken += wrong
                        broken_orders.add(order["order_id"])
                    heads.append((order["order_id"], order["last_event_hash"]))
                if broken:
                    continue  # keep verifying, to report every broken chain; nothing more is written
                for name, batch in (("orders", orders), ("order_events", events), ("trades", trades)):
                    writers[name].write(batch)
                    rows[name] += len(batch)
    finally:
        for writer in writers.values():
            writer.close()
    if broken:
        raise ChainBroken(broken, len(broken_orders))
    digest = store_digest(heads)
    files = {f"{name}.{fmt}": {"rows": rows[name], "sha256": _file_digest(staging / f"{name}.{fmt}")}
             for name in TABLES}
    manifest = {
        "tessera_export": 1,
        "from": start.astimezone(dt.timezone.utc).isoformat(), "to": end.astimezone(dt.timezone.utc).isoformat(),
        "format": fmt,
        "selection": SELECTION,
        **({"csv_text": CSV_TEXT_RULE} if fmt == "csv" else {}),
        "files": files,
        "chains_verified": len(heads),
        "exported_chain_heads_digest": digest,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Summary(staging, rows, len(heads), digest)


__all__ = ["ChainBroken", "ExportError", "FORMATS", "SELECTION", "Summary", "export", "require_format"]
