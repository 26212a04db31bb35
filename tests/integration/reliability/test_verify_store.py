"""The hash chain and ``tessera verify-store``: a clean history passes; every kind of
tampering, and every broken promise, is found and reported, all of them at once."""

from __future__ import annotations

import json
from decimal import Decimal

from reliability_history import build_history
from sqlalchemy import delete, insert, select, update

from services.cli.__main__ import main as cli_main
from services.reliability import check_store
from services.store.chain import event_hash
from services.store.models import order_events_table as events_t
from services.store.models import orders_table as orders_t
from services.store.models import positions_table as positions_t
from services.store.models import trades_table as trades_t

FIELDS = ("order_id", "sequence", "event_time", "from_status", "to_status", "reason", "payload")


def kinds(store, **options):
    return sorted({v.kind for v in check_store(store.engine, **options).violations})


def events_of(store, order_id):
    with store.engine.connect() as connection:
        return [dict(r) for r in connection.execute(
            select(events_t).where(events_t.c.order_id == order_id).order_by(events_t.c.sequence)).mappings()]


def execute(store, statement):
    with store.engine.begin() as connection:
        connection.execute(statement)


def test_a_clean_history_has_no_violation_and_every_event_is_chained(store, history):
    result = check_store(store.engine)

    assert result.violations == []
    assert (result.orders, result.trades, result.open_orders) == (7, 3, 2)
    for order_id in history.values():
        events = events_of(store, order_id)
        assert events[0]["prev_hash"] is None
        assert [e["prev_hash"] for e in events[1:]] == [e["hash"] for e in events[:-1]]
        assert all(e["hash"] == event_hash(e["prev_hash"], **{f: e[f] for f in FIELDS}) for e in events)
        with store.uow(read_only=True) as uow:
            assert uow.orders.get(order_id).last_event_hash == events[-1]["hash"]


def test_the_same_events_hash_alike_on_every_backend(store, history):
    # Fixed inputs, fixed hash: SQLite and PostgreSQL give the event back identically.
    events = events_of(store, history["risk_rejected"])
    rejected = events[1]
    assert rejected["payload"] == {"violations": [{"code": "MAX_NOTIONAL_EXCEEDED", "limit": "250000"}]}
    assert event_hash(None, **{**{f: rejected[f] for f in FIELDS}, "order_id": "o-1"}) == event_hash(
        None, order_id="o-1", sequence=2, event_time=rejected["event_time"], from_status="PENDING",
        to_status="REJECTED", reason="risk: MAX_NOTIONAL_EXCEEDED",
        payload={"violations": [{"limit": Decimal(250000), "code": "MAX_NOTIONAL_EXCEEDED"}]})


def test_an_edited_event_is_found(store, history):
    target = events_of(store, history["filled"])[3]
    execute(store, update(events_t).where(events_t.c.id == target["id"]).values(reason="venue: nothing to see"))

    assert kinds(store) == ["EVENT_EDITED"]


def test_an_edited_payload_is_found_even_when_only_a_number_changes(store, history):
    fill = next(e for e in events_of(store, history["filled"]) if e["payload"].get("trade_id") == "t-1")
    execute(store, update(events_t).where(events_t.c.id == fill["id"]).values(payload={**fill["payload"], "price": "1"}))

    assert "EVENT_EDITED" in kinds(store)


def test_an_edited_event_with_its_hash_recomputed_breaks_the_link_to_the_next(store, history):
    target = events_of(store, history["filled"])[2]
    forged = {**{f: target[f] for f in FIELDS}, "reason": "forged"}
    execute(store, update(events_t).where(events_t.c.id == target["id"])
            .values(reason="forged", hash=event_hash(target["prev_hash"], **forged)))

    assert kinds(store) == ["CHAIN_BROKEN"]


def test_a_deleted_event_in_the_middle_is_found(store, history):
    target = events_of(store, history["cancelled"])[3]
    execute(store, delete(events_t).where(events_t.c.id == target["id"]))

    assert {"SEQUENCE_GAP", "CHAIN_BROKEN"} <= set(kinds(store))


def test_a_deleted_newest_event_is_found_by_the_head(store, history):
    newest = events_of(store, history["venue_rejected"])[-1]
    execute(store, delete(events_t).where(events_t.c.id == newest["id"]))

    assert {"CHAIN_HEAD_MISMATCH", "REPLAY_MISMATCH"} <= set(kinds(store))


def test_an_inserted_event_is_found(store, history):
    events = events_of(store, history["approved"])
    last = events[-1]
    row = {f: last[f] for f in FIELDS} | {"sequence": 3, "from_status": "APPROVED", "to_status": "SUBMITTED",
                                           "reason": "oms: risk token verified", "payload": {"token_nonce": "x"}}
    execute(store, insert(events_t).values(**row, prev_hash=last["hash"], hash=event_hash(last["hash"], **row)))

    assert "CHAIN_HEAD_MISMATCH" in kinds(store)


def test_swapped_events_are_found(store, history):
    first, second = events_of(store, history["filled"])[3:5]
    execute(store, update(events_t).where(events_t.c.id == first["id"]).values(sequence=-1))
    execute(store, update(events_t).where(events_t.c.id == second["id"]).values(sequence=first["sequence"]))
    execute(store, update(events_t).where(events_t.c.id == first["id"]).values(sequence=second["sequence"]))

    assert "CHAIN_BROKEN" in kinds(store)


def test_an_order_row_changed_behind_its_events_back_is_found_by_replay(store, history):
    execute(store, update(orders_t).where(orders_t.c.order_id == history["in_doubt"]).values(status="FILLED"))
    execute(store, update(orders_t).where(orders_t.c.order_id == history["filled"])
            .values(filled_quantity=Decimal("1.4")))

    result = check_store(store.engine)

    assert {(v.kind, v.order_id) for v in result.violations} >= {
        ("REPLAY_MISMATCH", history["in_doubt"]), ("REPLAY_MISMATCH", history["filled"]),
        ("TRADES_MISMATCH", history["filled"]),
    }


def test_a_lost_trade_a_phantom_trade_and_a_wrong_position_are_found(store, history):
    execute(store, delete(trades_t).where(trades_t.c.trade_id == "t-3"))
    phantom = {"trade_id": "t-99", "venue": "paper", "order_id": history["working"], "account": "acct-1",
               "symbol": "BTCUSDT", "side": "BUY", "quantity": Decimal("0.1"), "price": Decimal(50000),
               "commission": Decimal(0), "trade_time": events_of(store, history["working"])[0]["event_time"]}
    execute(store, insert(trades_t).values(**phantom))
    execute(store, update(positions_t).values(quantity=Decimal(7)))

    assert {"FILL_WITHOUT_TRADE", "TRADE_WITHOUT_FILL", "TRADES_MISMATCH", "LEDGER_WITHOUT_TRADE",
            "POSITION_MISMATCH"} <= set(kinds(store))
    # The phantom trade is not in the ledger: pending while Risk may still apply it, a
    # violation once every replica should have caught up.
    assert "LEDGER_MISSING" not in kinds(store) and check_store(store.engine).ledger_pending == 1
    assert "LEDGER_MISSING" in kinds(store, require_ledger=True)


def test_a_second_submission_and_a_reused_token_are_found(store, history):
    # Forge both through the repository path so the chain itself stays valid.
    from services.domain import OrderStatus

    nonce = events_of(store, history["filled"])[2]["payload"]["token_nonce"]
    with store.uow() as uow:
        order = uow.orders.get(history["approved"])
        order.transition(OrderStatus.SUBMITTED, payload={"token_nonce": nonce})
        uow.orders.save(order)
        uow.commit()

    assert kinds(store) == ["TOKEN_REUSED"]


def test_orders_left_working_or_in_doubt_are_reported_on_request(store, history):
    assert kinds(store) == []
    assert kinds(store, require_terminal=True) == ["NOT_TERMINAL"]
    assert kinds(store, in_doubt_after=60) == ["IN_DOUBT_UNRESOLVED"]  # the history is from 2025
    assert kinds(store, in_doubt_after=10**10) == []


def test_the_command_reports_every_violation_and_exits_4(store, store_url, history, capsys):
    assert cli_main(["verify-store", "--database-url", store_url]) == 0
    assert "no violations" in capsys.readouterr().out

    for order_id in (history["filled"], history["cancelled"]):
        target = events_of(store, order_id)[1]
        execute(store, update(events_t).where(events_t.c.id == target["id"]).values(reason="edited"))

    assert cli_main(["verify-store", "--database-url", store_url]) == 4
    out = capsys.readouterr().out
    assert f"EVENT_EDITED order {history['filled']}" in out and f"EVENT_EDITED order {history['cancelled']}" in out
    assert "2 violations: EVENT_EDITED 2" in out

    assert cli_main(["verify-store", "--database-url", store_url, "--json", "--require-terminal"]) == 4
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is False and answer["orders"] == 7
    assert sorted(v["kind"] for v in answer["violations"]) == ["EVENT_EDITED"] * 2 + ["NOT_TERMINAL"] * 2


def test_the_command_never_writes(store, store_url, history, capsys):
    with store.engine.connect() as connection:
        before = connection.execute(select(events_t.c.hash).order_by(events_t.c.id)).scalars().all()
    assert cli_main(["verify-store", "--database-url", store_url]) == 0
    with store.engine.connect() as connection:
        assert connection.execute(select(events_t.c.hash).order_by(events_t.c.id)).scalars().all() == before


def test_the_command_refuses_a_store_it_cannot_read(tmp_path, capsys):
    assert cli_main(["verify-store", "--database-url", f"sqlite:///{tmp_path}/missing.db"]) == 1
    assert "cannot verify" in capsys.readouterr().err


def test_upgrading_a_store_chains_the_events_written_before_the_chain(tmp_path):
    import sqlite3

    from alembic.script import ScriptDirectory

    from services.store import Store, make_engine, upgrade
    from services.store.migrate import alembic_config

    # A history written by the current code, copied into a store at 0002 without the chain.
    store = Store.from_url(f"sqlite:///{tmp_path}/new.db")
    build_history(store)
    with store.engine.connect() as connection:
        hashes = connection.execute(select(events_t.c.hash).order_by(events_t.c.id)).scalars().all()
    store.dispose()
    old = make_engine(f"sqlite:///{tmp_path}/old.db")
    upgrade(old, "0002_positions_ledger")
    old.dispose()
    raw = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    raw.execute("ATTACH DATABASE ? AS src", (str(tmp_path / "new.db"),))
    for table in ("order_managers", "orders_ts", "order_events_ts", "trades_ts", "positions", "ledger_entries"):
        columns = ", ".join(row[1] for row in raw.execute(f"PRAGMA main.table_info({table})"))
        raw.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM src.{table}")
    raw.close()

    old = make_engine(f"sqlite:///{tmp_path}/old.db")
    assert upgrade(old) == ScriptDirectory.from_config(alembic_config()).get_current_head()
    result = check_store(old)
    with old.connect() as connection:
        migrated = connection.execute(select(events_t.c.hash).order_by(events_t.c.id)).scalars().all()
    old.dispose()

    assert result.violations == []
    assert migrated == hashes  # the migration computes what the repository would


def test_an_overfill_quarantines_its_symbol_and_the_command_reports_it(store, store_url, history, capsys):
    from reliability_history import report

    from services.domain import OrderStatus
    from services.oms.fill_tracker import apply_report

    with store.uow() as uow:
        order = uow.orders.get(history["filled"])
        apply_report(uow, report(order, OrderStatus.FILLED, trade=("t-again", str(order.quantity), "65000")))
        uow.commit()

    assert kinds(store) == ["OVERFILL"]  # reported; its symbol quarantined, so nothing more
    assert cli_main(["verify-store", "--database-url", store_url]) == 4
    out = capsys.readouterr().out
    assert f"OVERFILL order {history['filled']}" in out and f"symbol:{order.symbol} is HALTED" in out

    # An overfill whose symbol is not quarantined (trading resumed, or recorded by an older
    # release) is a violation of its own.
    with store.uow() as uow:
        uow.trading_state.set("ACTIVE", "someone", "resumed", scope=f"symbol:{order.symbol}")
        uow.commit()
    assert kinds(store) == ["OVERFILL", "OVERFILL_NOT_QUARANTINED"]


def _fill_after_close(store, order_id, trade_id="t-late", quantity="0.5", price="50010"):
    from reliability_history import report

    from services.domain import OrderStatus
    from services.oms.fill_tracker import apply_report

    with store.uow() as uow:
        order = uow.orders.get(order_id)
        apply_report(uow, report(order, OrderStatus.PARTIALLY_FILLED, trade=(trade_id, quantity, price), when=5))
        uow.commit()


def test_a_fill_after_close_verifies_clean_once_the_ledger_follows_it(store, store_url, history, capsys):
    from reliability_history import follow_ledger

    _fill_after_close(store, history["cancelled"])  # CANCELLED having filled 0.25 of 2; the venue filled 0.5 more

    assert kinds(store) == []  # the trade is pending in the ledger, not a violation
    follow_ledger(store)
    result = check_store(store.engine, require_ledger=True)
    assert result.violations == [] and result.trades == 4 and result.ledger_pending == 0
    with store.uow(read_only=True) as uow:
        order = uow.orders.get(history["cancelled"])
    assert (order.status.value, order.filled_quantity) == ("CANCELLED", Decimal("0.75"))
    assert cli_main(["verify-store", "--database-url", store_url, "--require-ledger"]) == 0


def test_a_fill_after_close_changed_or_lost_behind_its_events_back_is_found(store, history):
    _fill_after_close(store, history["cancelled"])
    execute(store, update(orders_t).where(orders_t.c.order_id == history["cancelled"])
            .values(filled_quantity=Decimal("0.25")))  # the order row forgets the late fill

    found = {(v.kind, v.order_id) for v in check_store(store.engine).violations}
    assert {("REPLAY_MISMATCH", history["cancelled"]), ("TRADES_MISMATCH", history["cancelled"])} <= found

    execute(store, update(orders_t).where(orders_t.c.order_id == history["cancelled"])
            .values(filled_quantity=Decimal("0.75")))
    execute(store, delete(trades_t).where(trades_t.c.trade_id == "t-late"))  # the trade row is lost
    assert {"FILL_WITHOUT_TRADE", "TRADES_MISMATCH"} <= set(kinds(store))


def test_a_fill_after_close_on_an_order_never_sent_is_found(store, history):
    # Forged through the repository, so the chain itself stays valid.
    from services.domain import OrderStatus, Trade

    with store.uow() as uow:
        order = uow.orders.get(history["approved"])
        order.transition(OrderStatus.CANCELLED, reason="cancel requested before submission")
        order.apply_fill_after_close(Decimal("0.001"), Decimal("50000"),
                                     payload={"trade_id": "t-forged", "quantity": "0.001", "price": "50000"})
        uow.orders.save(order)
        uow.trades.add_if_absent(Trade("t-forged", order.venue, order.order_id, order.account, order.symbol,
                                       order.side, Decimal("0.001"), Decimal("50000"), order.updated_time))
        uow.commit()

    assert kinds(store) == ["FILL_NEVER_SUBMITTED"]


def test_a_closed_order_owing_fills_is_reported_on_request_and_its_mark_replayed(store, history):
    import dataclasses

    from reliability_history import report

    from services.domain import OrderStatus
    from services.oms.fill_tracker import apply_report

    working = history["working"]  # ACCEPTED; the venue cancels it saying it executed 0.5 of it
    with store.uow() as uow:
        order = uow.orders.get(working)
        apply_report(uow, dataclasses.replace(report(order, OrderStatus.CANCELLED, when=6),
                                              cumulative_quantity=Decimal("0.5")))
        uow.commit()

    def found(**options):
        return sorted(v.kind for v in check_store(store.engine, **options).violations if v.order_id == working)

    assert found() == []  # the fills are on their way: no violation while orders flow
    assert found(require_terminal=True) == ["FILLS_OWED"]
    execute(store, update(orders_t).where(orders_t.c.order_id == working).values(venue_executed_quantity=None))
    assert found() == ["REPLAY_MISMATCH"]  # the mark cleared behind its events' back
    execute(store, update(orders_t).where(orders_t.c.order_id == working)
            .values(venue_executed_quantity=Decimal("0.5")))
    _fill_after_close(store, working)  # the 0.5 arrives
    with store.uow(read_only=True) as uow:
        assert uow.orders.get(working).venue_executed_quantity is None
    assert found(require_terminal=True) == []


def _write_once_after_the_orders_are_read(engine, write):
    """Run ``write`` (a commit through the store) right after ``engine`` first reads orders_ts:
    a writer that commits while a check is half-way through its reads."""
    from sqlalchemy import event

    done = []

    def after(connection, cursor, statement, parameters, context, executemany):
        if not done and statement.lstrip().upper().startswith("SELECT") and "FROM orders_ts" in statement:
            done.append(True)
            write()

    event.listen(engine, "after_cursor_execute", after)
    return done


def test_the_command_reads_one_snapshot_so_a_write_meanwhile_is_no_violation(store, store_url, history):
    from reliability_history import _move

    from services.cli.verify_store import read_only_engine
    from services.domain import OrderStatus

    with store.engine.connect() as connection:
        stored = len(connection.execute(select(events_t.c.id)).all())
    engine = read_only_engine(store_url)
    try:
        done = _write_once_after_the_orders_are_read(
            engine, lambda: _move(store, history["working"], OrderStatus.PENDING_CANCEL, "cancel requested"))
        result = check_store(engine)
    finally:
        engine.dispose()

    assert done  # the order moved on while the check read the store
    assert result.violations == []
    assert result.events == stored  # the store as it was when the check began


def test_an_overfill_of_an_order_in_doubt_is_no_second_submission(store, history):
    from reliability_history import report

    from services.domain import OrderStatus
    from services.oms.fill_tracker import apply_report

    with store.uow() as uow:  # SUBMITTED, no venue answer yet: the venue reports more than its quantity
        order = uow.orders.get(history["in_doubt"])
        apply_report(uow, report(order, OrderStatus.FILLED, trade=("t-over", str(order.quantity + 1), "65000")))
        uow.commit()
    notes = [e for e in events_of(store, history["in_doubt"]) if e["from_status"] == e["to_status"]]
    assert [(e["to_status"], e["payload"]["anomaly"]) for e in notes] == [("SUBMITTED", "OVERFILL")]

    # The note (its symbol quarantined) records the overfill without a transition: the order
    # was still approved, sent once, with its token.
    assert kinds(store) == ["OVERFILL"]


def test_a_ledger_entry_at_another_price_or_account_than_its_trade_is_found(store, history):
    from services.store.models import ledger_entries_table as entries_t

    assert kinds(store, require_ledger=True) == []
    execute(store, update(entries_t).where(entries_t.c.trade_id == "t-1").values(price=Decimal(1)))
    assert kinds(store, require_ledger=True) == ["LEDGER_MISMATCH"]  # its realised PnL is not the trade's

    execute(store, update(entries_t).where(entries_t.c.trade_id == "t-1").values(price=Decimal("50000.1")))
    assert kinds(store, require_ledger=True) == []
    # Moved to another account with both positions changed to match: the trade is acct-1's.
    execute(store, update(entries_t).where(entries_t.c.trade_id == "t-3").values(account="acct-2"))
    with store.engine.connect() as connection:
        held = connection.execute(select(positions_t.c.quantity).where(positions_t.c.account == "acct-1")).scalar_one()
    execute(store, update(positions_t).values(quantity=held - Decimal("0.25")))
    execute(store, insert(positions_t).values(
        account="acct-2", market_type="FUTURES", symbol="BTCUSDT", quantity=Decimal("0.25"), cost_basis=Decimal(12500),
        average_entry_price=Decimal(50000), realised_pnl=Decimal(0), commission=Decimal(0), fees={},
        updated_time=events_of(store, history["cancelled"])[0]["event_time"], version=1))
    assert kinds(store) == ["LEDGER_MISMATCH"]


def test_a_trade_whose_order_is_not_stored_is_found(store, store_url, history, capsys):
    # Written behind the store's back, its foreign key off: a trade of an order that is not there.
    trade = {"trade_id": "t-orphan", "venue": "paper", "order_id": "no-such-order", "account": "acct-1",
             "symbol": "BTCUSDT", "side": "BUY", "quantity": Decimal("0.1"), "price": Decimal(50000),
             "commission": Decimal(0), "trade_time": events_of(store, history["filled"])[0]["event_time"]}
    if store.engine.dialect.name == "sqlite":
        from sqlalchemy import create_engine

        plain = create_engine(store.engine.url)  # SQLite's default: foreign keys not enforced
        with plain.begin() as connection:
            connection.execute(insert(trades_t).values(**trade))
        plain.dispose()
    else:
        with store.engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")  # no FK triggers
            connection.execute(insert(trades_t).values(**trade))

    assert ("TRADE_WITHOUT_ORDER", "no-such-order") in {(v.kind, v.order_id) for v in check_store(store.engine).violations}
    assert cli_main(["verify-store", "--database-url", store_url]) == 4
    assert "TRADE_WITHOUT_ORDER order no-such-order" in capsys.readouterr().out


def test_the_command_exits_1_for_a_store_not_at_the_newest_schema_and_2_for_bad_usage(tmp_path, capsys):
    import pytest

    from services.store import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    upgrade(engine, "0009_fills_owed")
    engine.dispose()
    assert cli_main(["verify-store", "--database-url", f"sqlite:///{tmp_path}/old.db"]) == 1
    error = capsys.readouterr().err
    assert "schema revision 0009_fills_owed" in error and "migrate it first" in error
    with pytest.raises(SystemExit) as usage:
        cli_main(["verify-store", "--in-doubt-after", "soon"])
    assert usage.value.code == 2
