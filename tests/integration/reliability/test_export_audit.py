"""``tessera export`` refuses what ``verify-store`` would report about an exported order,
selects its window exactly, and writes free text a spreadsheet cannot run."""

from __future__ import annotations

import csv
import datetime as dt
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
