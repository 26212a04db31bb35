"""``tessera export`` refuses what ``verify-store`` would report about an exported order,
selects its window exactly, and writes free text a spreadsheet cannot run."""

from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from reliability_history import at
from sqlalchemy import select, update

from services.cli.__main__ import main as cli_main
from services.reliability.export import ChainBroken, export
from services.store.models import order_events_table as events_t
from services.store.models import orders_table as orders_t
from services.store.models import trades_table as trades_t

END = at(3600)


def _execute(store, statement):
    with store.engine.begin() as connection:
        connection.execute(statement)


def test_an_order_row_changed_behind_its_events_back_refuses_the_export_naming_it(store, history, tmp_path):
    _execute(store, update(orders_t).where(orders_t.c.order_id == history["in_doubt"]).values(status="FILLED"))
    _execute(store, update(orders_t).where(orders_t.c.order_id == history["filled"])
             .values(filled_quantity=Decimal("1.4")))

    with pytest.raises(ChainBroken) as refused:
        export(store.engine, at(0), END, "csv", tmp_path / "audit")

    found = {(v.kind, v.order_id) for v in refused.value.violations}
    assert {("REPLAY_MISMATCH", history["in_doubt"]), ("REPLAY_MISMATCH", history["filled"])} <= found
    assert not (tmp_path / "audit").exists()


def test_a_trade_changed_behind_its_fill_event_refuses_the_export_naming_its_order(store, history, tmp_path):
    _execute(store, update(trades_t).where(trades_t.c.trade_id == "t-1").values(price=Decimal("1")))

    with pytest.raises(ChainBroken) as refused:
        export(store.engine, at(0), END, "csv", tmp_path / "audit")

    assert ("TRADE_MISMATCH", history["filled"]) in {(v.kind, v.order_id) for v in refused.value.violations}


def test_the_command_refuses_a_changed_order_row_with_exit_4(store, store_url, history, tmp_path, capsys):
    _execute(store, update(orders_t).where(orders_t.c.order_id == history["cancelled"]).values(status="FILLED"))

    assert cli_main(["export", "--from", "2025-01-01", "--to", "2026-01-01", "--out", str(tmp_path / "q"),
                     "--database-url", store_url]) == 4
    error = capsys.readouterr().err
    assert "refusing to export" in error and f"REPLAY_MISMATCH order {history['cancelled']}" in error
    assert not (tmp_path / "q").exists()


def _order(store, *, created: dt.datetime, client_order_id: str | None = None, reason: str = "risk: approved",
           moved: dt.datetime | None = None) -> str:
    import order_factory

    from services.domain import OrderStatus

    fields = {"order_time": created, "updated_time": created}
    if client_order_id is not None:
        fields["client_order_id"] = client_order_id
    order = order_factory.build_order(**fields)
    order.record_creation(created)
    order.transition(OrderStatus.APPROVED, reason=reason, at=moved or created)
    with store.uow() as uow:
        uow.orders.add(order)
        uow.commit()
    return order.order_id


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _unescaped(cell: str) -> str:
    """A text cell as docs/export.md says to read it: one leading apostrophe dropped."""
    return cell[1:] if cell.startswith("'") else cell


FREE_TEXT = ["a, b", 'say "no"', "line one\nline two\r\nline three", " leading and trailing spaces "]
FORMULAS = ["=HYPERLINK(\"http://example.invalid\",\"x\")", "+1+1", "-1+1", "@SUM(A1)", "\tTAB", "\rCR",
            "'quoted already", "=1+1"]


def test_free_text_with_commas_quotes_and_newlines_reads_back_exactly_from_the_csv(store, tmp_path):
    base = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    ids = {text: _order(store, created=base, client_order_id=f"cid-{index}", reason=text)
           for index, text in enumerate(FREE_TEXT)}

    export(store.engine, base, base + dt.timedelta(days=1), "csv", tmp_path / "audit")

    events = _csv(tmp_path / "audit" / "order_events.csv")
    reasons = {e["order_id"]: _unescaped(e["reason"]) for e in events if e["to_status"] == "APPROVED"}
    assert reasons == {order_id: text for text, order_id in ids.items()}


def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_written_inert_and_reads_back_by_the_documented_rule(
        store, tmp_path):
    base = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    ids = {text: _order(store, created=base, client_order_id=text, reason=text) for text in FORMULAS}

    export(store.engine, base, base + dt.timedelta(days=1), "csv", tmp_path / "audit")

    orders = {o["order_id"]: o for o in _csv(tmp_path / "audit" / "orders.csv")}
    events = [e for e in _csv(tmp_path / "audit" / "order_events.csv") if e["to_status"] == "APPROVED"]
    for text, order_id in ids.items():
        cell = orders[order_id]["client_order_id"]
        assert cell[0] == "'", cell  # a spreadsheet shows it as text, never runs it
        assert _unescaped(cell) == text
    assert {e["order_id"]: _unescaped(e["reason"]) for e in events} == {o: t for t, o in ids.items()}
    assert all(e["reason"][0] == "'" for e in events)


def test_the_window_includes_its_start_and_excludes_its_end(store, tmp_path):
    start, end = dt.datetime(2025, 6, 1, tzinfo=dt.UTC), dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
    tick = dt.timedelta(microseconds=1)
    inside = [_order(store, created=start), _order(store, created=end - tick),
              _order(store, created=start - dt.timedelta(days=3), moved=start)]  # placed before, moved at the start
    outside = [_order(store, created=start - tick), _order(store, created=end),
               _order(store, created=start - dt.timedelta(days=3), moved=end)]

    export(store.engine, start, end, "csv", tmp_path / "audit")

    exported = {o["order_id"] for o in _csv(tmp_path / "audit" / "orders.csv")}
    assert exported == set(inside) and not exported & set(outside)


def test_a_window_given_in_another_time_zone_selects_the_same_instants(store, store_url, tmp_path):
    start = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    tick = dt.timedelta(microseconds=1)
    first, last = _order(store, created=start), _order(store, created=start + dt.timedelta(hours=1) - tick)
    _order(store, created=start - tick)
    _order(store, created=start + dt.timedelta(hours=1))

    assert cli_main(["export", "--from", "2025-06-01T02:00:00+02:00", "--to", "2025-05-31T22:00:00-03:00",
                     "--out", str(tmp_path / "zoned"), "--database-url", store_url]) == 0

    assert {o["order_id"] for o in _csv(tmp_path / "zoned" / "orders.csv")} == {first, last}


def test_a_target_that_cannot_be_created_exits_1_and_leaves_nothing(store, store_url, history, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    assert cli_main(["export", "--from", "2025-01-01", "--to", "2026-01-01", "--out", str(blocker / "audit"),
                     "--database-url", store_url]) == 1

    assert "cannot export" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("tessera.db")] == ["a-file"]

def test_the_manifest_records_a_window_given_in_other_time_zones_in_utc(store, store_url, history, tmp_path):
    assert cli_main(["export", "--from", "2025-03-04T07:00:00+02:00", "--to", "2025-03-04T03:00:00-03:00",
                     "--out", str(tmp_path / "zoned"), "--database-url", store_url]) == 0

    manifest = json.loads((tmp_path / "zoned" / "manifest.json").read_text())
    assert (manifest["from"], manifest["to"]) == ("2025-03-04T05:00:00+00:00", "2025-03-04T06:00:00+00:00")


def test_an_export_through_the_stores_own_engine_lets_a_writer_commit_meanwhile(store, history, tmp_path):
    from reliability_history import _move
    from sqlalchemy import event

    from services.domain import OrderStatus

    moved = []

    def after(connection, cursor, statement, parameters, context, executemany):
        if not moved and "FROM orders_ts" in statement:
            moved.append(True)  # a writer commits once the export has read the orders
            _move(store, history["working"], OrderStatus.PENDING_CANCEL, "cancel requested")

    event.listen(store.engine, "after_cursor_execute", after)
    try:
        export(store.engine, at(0), END, "csv", tmp_path / "audit")
    finally:
        event.remove(store.engine, "after_cursor_execute", after)

    assert moved
    with store.uow(read_only=True) as uow:
        assert uow.orders.get(history["working"]).status is OrderStatus.PENDING_CANCEL
    exported = {o["order_id"]: o["status"] for o in _csv(tmp_path / "audit" / "orders.csv")}
    assert exported[history["working"]] == "ACCEPTED"  # the snapshot the export began with


def test_the_window_is_read_once_however_many_pages_the_export_writes(store, history, tmp_path, monkeypatch):
    """Each page selecting its orders from the window anew reads the window's events once
    per page: an export of n orders would read n / PAGE times the window. One read streams
    the window's order ids, and each page of them reads its orders, events and trades."""
    from sqlalchemy import event

    from services.reliability import export as export_module

    monkeypatch.setattr(export_module, "PAGE", 2)
    window_reads = []

    def before(connection, cursor, statement, parameters, context, executemany):
        if "FROM order_events_ts" in statement and "event_time >=" in statement:
            window_reads.append(statement)

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        summary = export(store.engine, at(0), END, "csv", tmp_path / "audit")
    finally:
        event.remove(store.engine, "before_cursor_execute", before)

    assert summary.rows["orders"] == len(history) > 2 * export_module.PAGE  # several pages
    assert len(window_reads) == 1


def test_the_parquet_export_keeps_extreme_decimals_exact_and_every_time_in_utc(store, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import order_factory

    from services.domain import OrderStatus, Trade

    created = dt.datetime(2025, 6, 1, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    order = order_factory.build_order(order_time=created, updated_time=created, quantity=Decimal("99999999999999999999"),
                                      price=Decimal("0.000000000000000001"))
    order.record_creation(created)
    for status in (OrderStatus.APPROVED, OrderStatus.SUBMITTED):
        order.transition(status, at=created, payload={"token_nonce": "n"} if status is OrderStatus.SUBMITTED else None)
    filled = Decimal("12345678.123456789012345678")
    order.apply_fill(filled, Decimal("1.10"), at=created,
                     payload={"trade_id": "t-x", "quantity": str(filled), "price": "1.10"})
    with store.uow() as uow:
        uow.orders.add(order)
        uow.trades.add_if_absent(Trade("t-x", order.venue, order.order_id, order.account, order.symbol, order.side,
                                       filled, Decimal("1.10"), created, commission=Decimal("-0.000000000000000001")))
        uow.commit()

    export(store.engine, created, created + dt.timedelta(seconds=1), "parquet", tmp_path / "audit")

    orders = pq.read_table(tmp_path / "audit" / "orders.parquet")
    events = pq.read_table(tmp_path / "audit" / "order_events.parquet")
    trades = pq.read_table(tmp_path / "audit" / "trades.parquet")
    for table, column in ((orders, "quantity"), (orders, "price"), (trades, "quantity"), (trades, "commission")):
        assert str(table.schema.field(column).type) == "decimal128(38, 18)"
    for table, column in ((orders, "order_time"), (events, "event_time"), (trades, "trade_time")):
        assert str(table.schema.field(column).type) == "timestamp[us, tz=UTC]"
    (row,) = orders.to_pylist()
    assert (row["quantity"], row["price"]) == (Decimal("99999999999999999999"), Decimal("1E-18"))
    assert row["order_time"] == created and row["order_time"].utcoffset() == dt.timedelta(0)
    (trade,) = trades.to_pylist()
    assert (trade["quantity"], trade["price"], trade["commission"]) == (filled, Decimal("1.1"), Decimal("-1E-18"))
    assert events.to_pylist()[0]["event_time"] == created


def _events_of(store, order_id):
    with store.engine.connect() as connection:
        return [dict(r) for r in connection.execute(
            select(events_t).where(events_t.c.order_id == order_id).order_by(events_t.c.sequence)).mappings()]


def _tamper(store, history, how):
    from sqlalchemy import delete, insert

    from services.store.chain import event_hash

    fields = ("order_id", "sequence", "event_time", "from_status", "to_status", "reason", "payload")
    if how == "deleted":
        target = _events_of(store, history["cancelled"])[3]
        _execute(store, delete(events_t).where(events_t.c.id == target["id"]))
        return history["cancelled"]
    if how == "reordered":
        first, second = _events_of(store, history["filled"])[3:5]
        _execute(store, update(events_t).where(events_t.c.id == first["id"]).values(sequence=-1))
        _execute(store, update(events_t).where(events_t.c.id == second["id"]).values(sequence=first["sequence"]))
        _execute(store, update(events_t).where(events_t.c.id == first["id"]).values(sequence=second["sequence"]))
        return history["filled"]
    if how == "inserted":
        last = _events_of(store, history["approved"])[-1]
        row = {f: last[f] for f in fields} | {"sequence": 3, "from_status": "APPROVED", "to_status": "SUBMITTED",
                                               "reason": "oms: risk token verified", "payload": {"token_nonce": "x"}}
        _execute(store, insert(events_t).values(**row, prev_hash=last["hash"], hash=event_hash(last["hash"], **row)))
        return history["approved"]
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["deleted", "reordered", "inserted"])
def test_a_deleted_reordered_or_inserted_event_refuses_the_export_naming_its_order(store, history, tmp_path, how):
    order_id = _tamper(store, history, how)

    with pytest.raises(ChainBroken) as refused:
        export(store.engine, at(0), END, "csv", tmp_path / "audit")

    assert {v.order_id for v in refused.value.violations} == {order_id}
    assert not (tmp_path / "audit").exists()
