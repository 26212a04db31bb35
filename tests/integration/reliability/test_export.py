"""``tessera export``: the orders active in a window with their complete hash chains and
trades, as CSV or Parquet that verify on their own; a broken chain refuses the export
and leaves nothing behind."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from reliability_history import at
from sqlalchemy import select, update

from services.cli.__main__ import main as cli_main
from services.reliability.export import ChainBroken, ExportError, export, require_format
from services.store.chain import event_hash
from services.store.models import order_events_table as events_t
from services.store.models import orders_table as orders_t
from services.store.models import trades_table as trades_t

START, END = at(2.5), at(3600)
FIELDS = ("order_id", "sequence", "event_time", "from_status", "to_status", "reason", "payload")


def rows(store, table, *order_by):
    with store.engine.connect() as connection:
        return [dict(r) for r in connection.execute(select(table).order_by(*order_by)).mappings()]


def active_in_window(store) -> set[str]:
    return {e["order_id"] for e in rows(store, events_t, events_t.c.id) if START <= e["event_time"] < END}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_export_holds_every_order_active_in_the_window_with_its_whole_chain_and_trades(store, history, tmp_path):
    expected = active_in_window(store)
    assert expected and expected != set(history.values())  # the window leaves some orders out

    summary = export(store.engine, START, END, "csv", tmp_path / "audit")

    out = tmp_path / "audit"
    orders = read_csv(out / "orders.csv")
    events = read_csv(out / "order_events.csv")
    trades = read_csv(out / "trades.csv")
    assert {o["order_id"] for o in orders} == expected
    stored_events = [e for e in rows(store, events_t, events_t.c.order_id, events_t.c.sequence)
                     if e["order_id"] in expected]
    assert [(e["order_id"], int(e["sequence"])) for e in events] == [(e["order_id"], e["sequence"])
                                                                     for e in stored_events]
    assert any(parse_time(e["event_time"]) < START for e in events)  # whole chains, not only the window
    assert sorted(t["trade_id"] for t in trades) == sorted(
        t["trade_id"] for t in rows(store, trades_t, trades_t.c.id) if t["order_id"] in expected)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["chains_verified"] == len(expected) == summary.chains_verified
    for name, count in (("orders.csv", len(orders)), ("order_events.csv", len(events)), ("trades.csv", len(trades))):
        assert manifest["files"][name]["rows"] == count
        assert manifest["files"][name]["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert (manifest["from"], manifest["to"], manifest["format"]) == (START.isoformat(), END.isoformat(), "csv")


def test_the_csv_export_verifies_on_its_own(store, history, tmp_path):
    export(store.engine, START, END, "csv", tmp_path / "audit")

    heads = {o["order_id"]: o["last_event_hash"] for o in read_csv(tmp_path / "audit" / "orders.csv")}
    chains: dict[str, str | None] = {}
    for event in read_csv(tmp_path / "audit" / "order_events.csv"):
        fields = {**{f: event[f] for f in FIELDS}, "sequence": int(event["sequence"]),
                  "event_time": parse_time(event["event_time"]), "from_status": event["from_status"] or None,
                  "payload": json.loads(event["payload"])}
        previous = chains.get(event["order_id"])
        assert (event["prev_hash"] or None) == previous
        assert event_hash(previous, **fields) == event["hash"]
        chains[event["order_id"]] = event["hash"]
    assert chains == heads


def test_the_csv_keeps_decimals_and_times_exact(store, history, tmp_path):
    export(store.engine, at(0), END, "csv", tmp_path / "audit")

    exported = {t["trade_id"]: t for t in read_csv(tmp_path / "audit" / "trades.csv")}
    for trade in rows(store, trades_t, trades_t.c.id):
        row = exported[trade["trade_id"]]
        assert (Decimal(row["quantity"]), Decimal(row["price"]), Decimal(row["commission"])) == (
            trade["quantity"], trade["price"], trade["commission"])
        assert parse_time(row["trade_time"]) == trade["trade_time"] and row["trade_time"].endswith("Z")


def test_the_parquet_export_holds_the_stored_values(store, history, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    export(store.engine, START, END, "parquet", tmp_path / "audit")

    table = pq.read_table(tmp_path / "audit" / "orders.parquet")
    assert str(table.schema.field("quantity").type) == "decimal128(38, 18)"
    assert str(table.schema.field("order_time").type) == "timestamp[us, tz=UTC]"
    stored = {o["order_id"]: o for o in rows(store, orders_t, orders_t.c.order_id)}
    exported = table.to_pylist()
    assert {o["order_id"] for o in exported} == active_in_window(store)
    for order in exported:
        original = stored[order["order_id"]]
        assert order["quantity"] == original["quantity"] and order["filled_quantity"] == original["filled_quantity"]
        assert order["order_time"] == original["order_time"] and order["reduce_only"] is original["reduce_only"]
        assert json.loads(order["reject_reasons"]) == original["reject_reasons"]
    events = pq.read_table(tmp_path / "audit" / "order_events.parquet").to_pylist()
    assert all(e["hash"] == event_hash(e["prev_hash"], **{**{f: e[f] for f in FIELDS},
                                                          "payload": json.loads(e["payload"])}) for e in events)


def test_a_tampered_event_refuses_the_export_and_leaves_nothing(store, history, tmp_path):
    target = next(e for e in rows(store, events_t, events_t.c.id) if e["order_id"] == history["filled"]
                  and e["sequence"] == 3)
    with store.engine.begin() as connection:
        connection.execute(update(events_t).where(events_t.c.id == target["id"]).values(reason="edited"))

    target_dir = tmp_path / "exports"
    target_dir.mkdir()
    with pytest.raises(ChainBroken) as refused:
        export(store.engine, at(0), END, "csv", target_dir / "audit")

    assert [(v.kind, v.order_id) for v in refused.value.violations] == [("EVENT_EDITED", history["filled"])]
    assert "refusing to export" in str(refused.value) and "nothing was written" in str(refused.value)
    assert list(target_dir.iterdir()) == []  # neither the export nor its staging directory


def test_the_command_exports_and_refuses_with_exit_codes(store, store_url, history, tmp_path, capsys):
    out = tmp_path / "q1"
    assert cli_main(["export", "--from", START.isoformat(), "--to", END.isoformat(), "--out", str(out),
                     "--database-url", store_url]) == 0
    printed = capsys.readouterr().out
    assert f"exported {len(active_in_window(store))} orders" in printed and (out / "manifest.json").exists()

    assert cli_main(["export", "--from", START.isoformat(), "--to", END.isoformat(), "--out", str(out),
                     "--database-url", store_url]) == 1
    assert "exists" in capsys.readouterr().err

    first = rows(store, events_t, events_t.c.id)[0]
    with store.engine.begin() as connection:
        connection.execute(update(events_t).where(events_t.c.id == first["id"]).values(reason="edited"))
    assert cli_main(["export", "--from", "2025-01-01", "--to", "2026-01-01", "--out", str(tmp_path / "q2"),
                     "--database-url", store_url]) == 4
    error = capsys.readouterr().err
    assert "refusing to export" in error and first["order_id"] in error and "EVENT_EDITED" in error
    assert not (tmp_path / "q2").exists()


def test_a_window_that_ends_before_it_starts_is_a_usage_error(store_url, capsys):
    with pytest.raises(SystemExit) as usage:
        cli_main(["export", "--from", "2026-02-01", "--to", "2026-01-01", "--database-url", store_url])
    assert usage.value.code == 2 and "--from" in capsys.readouterr().err


def test_parquet_without_pyarrow_is_refused_with_the_extra_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ExportError, match=r"tessera\[export\]"):
        require_format("parquet")
    with pytest.raises(ExportError, match="csv or parquet"):
        require_format("xlsx")


def test_an_order_that_moves_on_during_the_export_is_exported_as_it_was(store, store_url, history, tmp_path):
    from reliability_history import _move
    from sqlalchemy import event

    from services.cli.verify_store import read_only_engine
    from services.domain import OrderStatus

    before = [e for e in rows(store, events_t, events_t.c.id) if e["order_id"] == history["working"]]
    engine = read_only_engine(store_url)
    moved = []

    def after(connection, cursor, statement, parameters, context, executemany):
        if not moved and "FROM orders_ts" in statement:
            moved.append(True)  # a writer commits once the export has read the orders
            _move(store, history["working"], OrderStatus.PENDING_CANCEL, "cancel requested")

    event.listen(engine, "after_cursor_execute", after)
    try:
        export(engine, START, END, "csv", tmp_path / "audit")
    finally:
        engine.dispose()

    assert moved
    exported = [e for e in read_csv(tmp_path / "audit" / "order_events.csv") if e["order_id"] == history["working"]]
    assert len(exported) == len(before)
