"""Every migration's downgrade, on both backends, with data in the tables: a round trip
(head -> an older revision -> head) keeps every value the older schema can hold, derives
again what the upgrades derive (the hash chain, the fills owed, the ledger), and leaves a
store ``verify-store`` finds clean; a downgrade that would lose an order's terms refuses.
Two processes migrating one store at once (the migrate Job and a service starting) leave
it migrated once."""

from __future__ import annotations

import datetime as dt
import multiprocessing
from decimal import Decimal

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from store_rows import T0, new_order, new_trade

from services.domain import LiquiditySide, MarketType, OrderStatus, OrderType, Side, WorkingType
from services.reliability import check_store
from services.store import Store, make_engine, upgrade
from services.store.migrate import alembic_config
from services.store.models import Base, exchange_executions_table

SCRIPTS = ScriptDirectory.from_config(alembic_config())
HEAD = SCRIPTS.get_current_head()
#: Every revision a store can be taken down to (a revision's down_revision), newest first.
TARGETS = [script.down_revision for script in SCRIPTS.walk_revisions() if script.down_revision]
#: Values every upgrade derives again from what it keeps (so they come back as they were).
DERIVED = {"orders_ts": {"last_event_hash", "venue_executed_quantity"}, "order_events_ts": {"prev_hash", "hash"}}
#: Tables the upgrade to 0004 rebuilds from the trades (new ids and times; checked by verify-store).
REBUILT = ("positions", "ledger_entries")


def _downgrade(engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _populate(store: Store) -> None:
    """Orders through the repository (a fill with its trade and the venue's raw JSON, a
    close owing fills, a replacement), a venue setting with its history, an execution."""
    filled = new_order(quantity=Decimal("1.5"), client_order_id="cid, \"quoted\"\nline")
    for status, seconds in ((OrderStatus.APPROVED, 0.1), (OrderStatus.SUBMITTED, 0.2), (OrderStatus.ACCEPTED, 0.3)):
        filled.transition(status, reason=status.value.lower(), at=_at(seconds),
                          payload={"token_nonce": "n-1"} if status is OrderStatus.SUBMITTED else None)
    filled.new_events[-1].raw_venue_json = '{"orderId":12345678901234567890,"status":"NEW"}'
    trade = new_trade(filled, trade_id="t-1", quantity=Decimal("0.5"), price=Decimal("50000.25"), trade_time=_at(1),
                      liquidity_side=LiquiditySide.MAKER, raw_venue_json='{"t":1,"p":"50000.25"}')
    filled.apply_fill(Decimal("0.5"), Decimal("50000.25"), at=_at(1),
                      payload={"trade_id": "t-1", "quantity": "0.5", "price": "50000.25"})
    filled.transition(OrderStatus.PENDING_CANCEL, reason="cancel requested", at=_at(2))
    filled.close_at_venue(OrderStatus.CANCELLED, reason="venue: cancelled", at=_at(3),
                          venue_executed=Decimal("0.75"))
    filled.remote_order_id = "12345678901234567890"
    filled.raw_venue_json = '{"orderId":12345678901234567890,"status":"CANCELED","executedQty":"0.75"}'
    replacement = new_order(side=Side.SELL, market_type=MarketType.SPOT, leverage=None,
                            replaces_order_id=filled.order_id)
    replacement.transition(OrderStatus.APPROVED, reason="approved", at=_at(4))
    with store.uow() as uow:
        uow.orders.add(filled)
        uow.trades.add_if_absent(trade)
        uow.orders.add(replacement)
        uow.venue_settings.put("acct-1", "", source="venue", position_mode="HEDGE", at=_at(5))
        uow.venue_settings.put("acct-1", "BTCUSDT", source="ops@desk", leverage=5, margin_mode="ISOLATED",
                               at=_at(6), comment="raise, per ticket 42")
        uow.commit()
    with store.engine.begin() as connection:
        connection.execute(exchange_executions_table.insert().values(
            order_id=filled.order_id, client_order_id=filled.client_order_id, account="acct-1", venue="paper",
            symbol="BTCUSDT", mode="PAPER", executed_time=_at(0.2)))


def _snapshot(engine) -> dict[str, list[dict]]:
    tables = {table.name: table for table in Base.metadata.sorted_tables}
    present = set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        return {name: [dict(row) for row in connection.execute(table.select().order_by(*table.primary_key.columns))
                       .mappings()]
                for name, table in tables.items() if name in present}


def _columns(engine) -> dict[str, set[str]]:
    inspector = inspect(engine)
    return {name: {c["name"] for c in inspector.get_columns(name)} for name in inspector.get_table_names()}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def populated(request, tmp_path):
    url = (f"sqlite:///{tmp_path}/m.db" if request.param == "sqlite"
           else request.getfixturevalue("create_postgres_database")())
    store = Store.from_url(url)
    _populate(store)
    yield store
    store.dispose()


@pytest.mark.parametrize("target", TARGETS)
def test_a_round_trip_through_each_downgrade_keeps_what_the_older_schema_holds(populated, target):
    before = _snapshot(populated.engine)
    assert check_store(populated.engine).violations == []

    _downgrade(populated.engine, target)
    older = _columns(populated.engine)
    assert upgrade(populated.engine) == HEAD

    after = _snapshot(populated.engine)
    for table, rows in before.items():
        if table not in older or table in REBUILT and "market_type" not in older[table]:
            continue  # the older schema has no such table (or the upgrade rebuilds it): documented as dropped
        kept = older[table] | DERIVED.get(table, set())
        assert [{k: v for k, v in row.items() if k in kept} for row in after[table]] == [
            {k: v for k, v in row.items() if k in kept} for row in rows], table
    assert check_store(populated.engine).violations == []


def test_0008_refuses_to_downgrade_while_an_order_uses_its_fields(populated):
    trailing = new_order(order_type=OrderType.TRAILING_STOP_MARKET, side=Side.SELL, price=None,
                         activation_price=Decimal("51000"), callback_rate=Decimal("1.5"),
                         working_type=WorkingType.MARK_PRICE)
    with populated.uow() as uow:
        uow.orders.add(trailing)
        uow.commit()

    with pytest.raises(RuntimeError, match=f"1 orders use .*{trailing.order_id}"):
        _downgrade(populated.engine, "0007_venue_settings_raw_json")

    with populated.uow(read_only=True) as uow:  # nothing changed
        kept = uow.orders.get(trailing.order_id)
    assert (kept.callback_rate, kept.activation_price, kept.working_type) == (
        Decimal("1.5"), Decimal("51000"), trailing.working_type)


def _migrate_in_a_process(url: str, barrier, results) -> None:
    barrier.wait()
    try:
        results.put(upgrade(url))
    except Exception as error:  # noqa: BLE001 - reported to the test
        results.put(f"{type(error).__name__}: {error}")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_two_processes_migrating_one_store_at_once_migrate_it_once(backend, tmp_path, request):
    url = (f"sqlite:///{tmp_path}/race.db" if backend == "sqlite"
           else request.getfixturevalue("create_postgres_database")().render_as_string(hide_password=False))
    engine = make_engine(url, environ={})
    try:
        upgrade(engine, "0002_positions_ledger")
        with engine.begin() as connection:  # orders written before the chain, for 0003 to chain
            for index in range(200):
                connection.execute(text(
                    "INSERT INTO orders_ts (order_id, client_order_id, account, venue, market_type, symbol, side, "
                    "order_type, quantity, time_in_force, reduce_only, post_only, status, filled_quantity, order_time, "
                    "updated_time, reject_reasons, version, last_sequence) VALUES (:id, :id, 'acct-1', 'paper', "
                    "'FUTURES', 'BTCUSDT', 'BUY', 'MARKET', '1.5', 'GTC', false, false, 'PENDING', '0', :at, :at, "
                    "'[]', 1, 1)"), {"id": f"o-{index:03d}", "at": T0})
                connection.execute(text(
                    "INSERT INTO order_events_ts (order_id, sequence, event_time, to_status, reason, payload) "
                    "VALUES (:id, 1, :at, 'PENDING', 'created', '{}')"), {"id": f"o-{index:03d}", "at": T0})
    finally:
        engine.dispose()
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_migrate_in_a_process, args=(url, barrier, results)) for _ in range(2)]
    for process in processes:
        process.start()
    answers = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)

    assert answers == [HEAD, HEAD]
    engine = make_engine(url, environ={})
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
        assert check_store(engine).violations == []
        assert check_store(engine).orders == 200
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_downgrade_run_by_alembic_that_refuses_on_the_way_leaves_the_store_at_head(
        backend, tmp_path, request, monkeypatch):
    url = (f"sqlite:///{tmp_path}/refused.db" if backend == "sqlite"
           else request.getfixturevalue("create_postgres_database")().render_as_string(hide_password=False))
    store = Store.from_url(url)
    try:
        _populate(store)
        quoted = new_order(market_type=MarketType.SPOT, order_type=OrderType.MARKET, price=None, leverage=None,
                           quantity=None, quote_order_qty=Decimal("100"))
        with store.uow() as uow:
            uow.orders.add(quoted)
            uow.commit()
        before = _snapshot(store.engine)
        monkeypatch.setenv("TESSERA_DATABASE_URL", url)

        with pytest.raises(RuntimeError, match="1 orders have no quantity"):  # 0008's, after 0010's and 0009's
            command.downgrade(alembic_config(), "0007_venue_settings_raw_json")

        with store.engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
        assert _snapshot(store.engine) == before  # nothing of 0010's or 0009's downgrade kept
    finally:
        store.dispose()
