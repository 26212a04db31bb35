"""Migrations build exactly the models' schema, idempotently; engine settings."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from services.domain import MarketType, OrderType, Side, WorkingType
from services.store import Store, database_url, make_engine, upgrade
from services.store.migrate import alembic_config
from services.store.migrate import main as migrate_main
from services.store.models import Base

#: The newest revision (get_current_head refuses a history with two heads).
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_migrated_schema_matches_the_models(store):
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_twice_is_harmless_and_stays_at_head(store):
    assert upgrade(store.engine) == HEAD
    assert upgrade(store.engine) == HEAD
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]


@pytest.mark.postgres
def test_replicas_upgrading_a_fresh_postgresql_database_at_once_all_succeed(create_postgres_database):
    url = create_postgres_database()
    barrier, results, errors = threading.Barrier(3), [], []

    def start_replica():
        barrier.wait()
        try:
            results.append(upgrade(url))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=start_replica) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and results == [HEAD] * 3


@pytest.mark.postgres
def test_migrate_command_upgrades_and_never_prints_the_password(create_postgres_database, capsys):
    url = create_postgres_database().set(password="s3cret-pw")  # trust auth ignores it
    assert migrate_main(["--url", url.render_as_string(hide_password=False)]) == 0
    printed = capsys.readouterr().out
    assert HEAD in printed and "s3cret-pw" not in printed


def test_migrate_command_on_a_sqlite_file(tmp_path, capsys):
    assert migrate_main(["--url", f"sqlite:///{tmp_path}/cli/t.db"]) == 0
    assert HEAD in capsys.readouterr().out


def test_database_url_defaults_to_sqlite_under_var_and_creates_the_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert database_url({}) == f"sqlite:///{tmp_path}/var/tessera.db"
    assert (tmp_path / "var").is_dir()


def test_database_url_selects_psycopg_for_postgresql_urls():
    for given in ("postgresql://u:p@db:5432/tessera", "postgres://u:p@db:5432/tessera"):
        assert database_url({"TESSERA_DATABASE_URL": given}) == "postgresql+psycopg://u:p@db:5432/tessera"


def _pragmas(engine):
    with engine.connect() as connection:
        return {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }


def test_sqlite_connections_use_wal_full_sync_foreign_keys_and_a_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/p.db", environ={})
    try:
        assert _pragmas(engine) == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 5000}
    finally:
        engine.dispose()
    engine = make_engine(f"sqlite:///{tmp_path}/p.db", environ={"TESSERA_SQLITE_SYNCHRONOUS": "normal"})
    try:
        assert _pragmas(engine)["synchronous"] == 1
    finally:
        engine.dispose()


def test_unknown_sqlite_synchronous_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="TESSERA_SQLITE_SYNCHRONOUS"):
        make_engine(f"sqlite:///{tmp_path}/p.db", environ={"TESSERA_SQLITE_SYNCHRONOUS": "FULL; DROP"})


def test_sqlite_transactions_are_real_so_ddl_and_reads_roll_back(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/tx.db", environ={})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            connection.rollback()  # the driver's legacy mode would have autocommitted the DDL
            assert connection.exec_driver_sql(
                "SELECT count(*) FROM sqlite_master WHERE name = 't'"
            ).scalar() == 0
    finally:
        engine.dispose()


def test_store_from_url_creates_the_sqlite_directory_and_migrates(tmp_path):
    store = Store.from_url(f"sqlite:///{tmp_path}/nested/dir/tessera.db")
    try:
        assert Path(tmp_path, "nested", "dir", "tessera.db").exists()
        with store.uow() as uow:
            assert uow.orders.count_open() == 0
    finally:
        store.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_upgrading_marks_the_closed_orders_still_owing_fills_from_their_close_events(backend, tmp_path, request):
    import order_factory
    from sqlalchemy import insert, select

    from services.domain import OrderStatus
    from services.store.engine import make_engine
    from services.store.mapping import event_to_row, order_to_row
    from services.store.models import order_events_table, orders_table

    url = (f"sqlite:///{tmp_path}/owed.db" if backend == "sqlite"
           else request.getfixturevalue("create_postgres_database")())
    engine = make_engine(url)
    try:
        upgrade(engine, "0008_conditional_orders")
        rows, events = [], []
        # (status, filled, the close's venue_executed_quantity): owing 0.3; made up by a fill
        # after close; a close that said nothing; an order still working.
        for status, filled, executed in ((OrderStatus.CANCELLED, "0.2", "0.5"), (OrderStatus.EXPIRED, "0.5", "0.5"),
                                         (OrderStatus.CANCELLED, "0", None), (OrderStatus.ACCEPTED, "0", None)):
            order = order_factory.build_order(quantity=Decimal("1"))
            order.record_creation()
            for step in (OrderStatus.APPROVED, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED):
                order.transition(step)
            if status is not OrderStatus.ACCEPTED:
                order.transition(status, payload=executed and {"venue_executed_quantity": executed})
            order.filled_quantity = Decimal(filled)
            row = order_to_row(order)
            del row["venue_executed_quantity"]  # a column of this migration
            rows.append({**row, "version": 1})
            events += [event_to_row(e) for e in order.new_events]
        with engine.begin() as connection:  # written as the 0008 release would
            connection.execute(insert(orders_table), rows)
            connection.execute(insert(order_events_table), events)

        upgrade(engine)

        with engine.connect() as connection:
            marked = dict(connection.execute(
                select(orders_table.c.order_id, orders_table.c.venue_executed_quantity)).all())
        assert [marked[row["order_id"]] for row in rows] == [Decimal("0.5"), None, None, None]
    finally:
        engine.dispose()
# -- 0008: conditional and quote-amount orders ---------------------------------------------------
def _downgrade(engine, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine_at_0007(request, tmp_path):
    url = (f"sqlite:///{tmp_path}/m.db" if request.param == "sqlite"
           else request.getfixturevalue("create_postgres_database")())
    engine = make_engine(url, environ={})
    upgrade(engine, "0007_venue_settings_raw_json")
    yield engine
    engine.dispose()


def _old_release_rows(connection) -> None:
    """An order with an event and a trade, written as release 0007 writes them (no new column named)."""
    connection.execute(text(
        "INSERT INTO orders_ts (order_id, client_order_id, account, venue, market_type, symbol, side, order_type, "
        "quantity, time_in_force, reduce_only, post_only, status, filled_quantity, order_time, updated_time, "
        "reject_reasons, version, last_sequence) VALUES ('o-1', 'c-1', 'acct-1', 'aster', 'FUTURES', 'BTCUSDT', "
        "'BUY', 'MARKET', '1.5', 'GTC', false, false, 'FILLED', '1.5', :at, :at, '[]', 1, 1)"),
        {"at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)})
    connection.execute(text(
        "INSERT INTO order_events_ts (order_id, sequence, event_time, to_status, reason, payload) "
        "VALUES ('o-1', 1, :at, 'PENDING', 'created', '{}')"), {"at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)})


def test_0008_keeps_the_rows_of_earlier_releases_and_lets_a_quantity_be_null(engine_at_0007, make_order):
    with engine_at_0007.begin() as connection:
        _old_release_rows(connection)

    assert upgrade(engine_at_0007) == HEAD
    store = Store(engine_at_0007)
    with store.uow(read_only=True) as uow:
        old = uow.orders.get("o-1")
    assert (old.quantity, old.close_position, old.price_protect, old.working_type, old.callback_rate) == (
        Decimal("1.5"), False, False, None, None)
    closing = make_order(order_type=OrderType.TAKE_PROFIT_MARKET, side=Side.SELL, price=None,
                         stop_price=Decimal("70000"), quantity=None, close_position=True, price_protect=True,
                         working_type=WorkingType.MARK_PRICE)
    with store.uow() as uow:
        uow.orders.add(closing)
        uow.commit()
    with store.uow(read_only=True) as uow:
        back = uow.orders.get(closing.order_id)
    assert back.token_body() == closing.token_body() and back.quantity is None
    with engine_at_0007.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_0008_downgrades_only_while_every_order_has_a_quantity(engine_at_0007, make_order):
    upgrade(engine_at_0007)
    store = Store(engine_at_0007)
    quoted = make_order(market_type=MarketType.SPOT, order_type=OrderType.MARKET, price=None, leverage=None,
                        quantity=None, quote_order_qty=Decimal("100"))
    with store.uow() as uow:
        uow.orders.add(quoted)
        uow.commit()
    with pytest.raises(RuntimeError, match="1 orders have no quantity"):
        _downgrade(engine_at_0007, "0007_venue_settings_raw_json")
    with engine_at_0007.begin() as connection:
        connection.execute(text("UPDATE orders_ts SET quantity = '1', quote_order_qty = NULL"))
    _downgrade(engine_at_0007, "0007_venue_settings_raw_json")
    with engine_at_0007.begin() as connection, pytest.raises(Exception, match="(?i)not null|null value"):
        connection.execute(text("UPDATE orders_ts SET quantity = NULL"))
