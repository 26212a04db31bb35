"""The ledger in the store: positions and ledger entries on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from sqlalchemy import insert, text

from services.domain import Side
from services.store import Store, upgrade
from services.store.engine import make_engine
from services.store.mapping import order_to_row
from services.store.models import orders_table

D = Decimal
T0 = dt.datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)


@pytest.fixture
def trade(make_order, make_trade):
    """``trade(side, quantity, price, account=, symbol=, at=, commission=, **fields)``: a fill."""
    order = make_order()

    def build(side: Side, quantity: str, price: str, *, account: str = "acct-1", symbol: str = "BTCUSDT",
              at: dt.datetime = T0, commission: str = "0.5", **fields):
        return make_trade(order, side=side, quantity=D(quantity), price=D(price), account=account, symbol=symbol,
                          trade_time=at, commission=D(commission), **fields)

    return build


def apply(store: Store, *trades) -> list:
    with store.uow() as uow:
        applied = [uow.positions.apply_trade(t) for t in trades]
        uow.commit()
    return applied


def test_a_never_traded_symbol_reads_as_a_flat_unstored_position(store):
    with store.uow(read_only=True) as uow:
        position = uow.positions.get("acct-1", "BTCUSDT")
        assert uow.positions.for_account("acct-1") == []

    assert (position.quantity, position.average_entry_price, position.version) == (0, None, 0)


def test_trades_build_the_position_exactly_through_increase_reduce_and_flip(store, trade):
    apply(store, trade(Side.BUY, "1", "100"), trade(Side.BUY, "2", "101"))
    apply(store, trade(Side.SELL, "1", "110"))
    (flipped,) = apply(store, trade(Side.SELL, "3", "90"))

    with store.uow(read_only=True) as uow:
        stored = uow.positions.get("acct-1", "BTCUSDT")
        entries = uow.positions.entries("acct-1")

    assert stored == flipped
    assert (stored.quantity, stored.average_entry_price, stored.cost_basis) == (D("-1"), D("90"), D("90"))
    assert stored.realised_pnl == D("-12")  # 110 + 180 - 302: exact after a non-terminating average
    assert (stored.commission, stored.version) == (D("2"), 4)
    assert stored.updated_time == T0
    assert [e.realised_pnl for e in entries] == [0, 0, D("9.333333333333333333"), D("-21.333333333333333333")]
    assert [e.position_quantity for e in entries] == [D("1"), D("3"), D("2"), D("-1")]
    assert all(e.applied_time.tzinfo is not None for e in entries)


def test_the_average_entry_price_is_stored_for_readers(store, trade):
    apply(store, trade(Side.BUY, "1", "100"), trade(Side.BUY, "2", "101"))

    with store.engine.connect() as connection:
        stored = connection.execute(text("SELECT average_entry_price FROM positions")).scalar_one()

    assert D(str(stored)) == D("100.666666666666666667")


def test_a_trade_applied_twice_is_applied_once(store, trade):
    once = trade(Side.BUY, "1", "100", trade_id="venue-trade-7")
    apply(store, once)
    (again,) = apply(store, once)

    with store.uow(read_only=True) as uow:
        assert uow.positions.get("acct-1", "BTCUSDT").quantity == D("1")
        assert len(uow.positions.entries("acct-1")) == 1
    assert again.version == 1


def test_positions_are_kept_per_account_and_symbol(store, trade):
    apply(
        store,
        trade(Side.BUY, "1", "100"),
        trade(Side.SELL, "5", "20", symbol="ETHUSDT"),
        trade(Side.BUY, "7", "100", account="acct-2"),
    )

    with store.uow(read_only=True) as uow:
        mine = uow.positions.for_account("acct-1")
        theirs = uow.positions.for_account("acct-2")

    assert [(p.symbol, p.quantity) for p in mine] == [("BTCUSDT", D("1")), ("ETHUSDT", D("-5"))]
    assert [(p.symbol, p.quantity) for p in theirs] == [("BTCUSDT", D("7"))]


def test_realised_since_sums_the_net_pnl_of_the_fills_traded_since_then(store, trade):
    yesterday, today = T0 - dt.timedelta(days=1), T0 + dt.timedelta(hours=1)
    apply(
        store,
        trade(Side.BUY, "2", "100", at=yesterday, commission="1"),
        trade(Side.SELL, "1", "90", at=yesterday, commission="1"),  # -10 yesterday
        trade(Side.SELL, "1", "80", at=today, commission="0.25"),  # -20 today
        trade(Side.BUY, "1", "50", at=today, account="acct-2"),
    )

    with store.uow(read_only=True) as uow:
        assert uow.positions.realised_since("acct-1", T0) == D("-20.25")
        assert uow.positions.realised_since("acct-1", yesterday) == D("-32.25")
        assert uow.positions.realised_since("acct-1", today + dt.timedelta(seconds=1)) == 0


@pytest.mark.postgres
def test_concurrent_fills_of_one_position_on_postgresql_are_all_applied(pg_store, trade):
    threads, errors = [], []
    barrier = threading.Barrier(8)

    def fill(number: int) -> None:
        barrier.wait()
        try:
            apply(pg_store, trade(Side.BUY, "0.1", str(100 + number)))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    for number in range(8):
        threads.append(threading.Thread(target=fill, args=(number,)))
        threads[-1].start()
    for thread in threads:
        thread.join(30)

    with pg_store.uow(read_only=True) as uow:
        position = uow.positions.get("acct-1", "BTCUSDT")
    assert errors == []
    assert (position.quantity, position.cost_basis, position.version) == (D("0.8"), D("82.8"), 8)


def test_upgrading_a_database_with_orders_adds_an_empty_ledger(tmp_path, make_order):
    url = f"sqlite:///{tmp_path}/old.db"
    engine = make_engine(url)
    try:
        upgrade(engine, "0001_initial")
        store = Store(engine)
        row = order_to_row(make_order())
        for later in ("last_event_hash", "replaces_order_id", "replaced_by_order_id", "raw_venue_json",
                      "close_position", "working_type", "price_protect", "activation_price", "callback_rate",
                      "quote_order_qty", "venue_executed_quantity"):
            del row[later]  # columns of later migrations (0003, 0005, 0006, 0008, 0009)
        with engine.begin() as connection:  # written as the 0001 release would
            connection.execute(insert(orders_table), {**row, "version": 1})
        upgrade(engine)
        with store.uow(read_only=True) as uow:
            assert uow.positions.for_account("acct-1") == []
            assert uow.orders.count_open() == 0
    finally:
        engine.dispose()


def test_the_realised_pnl_a_replica_loads_is_the_exact_sum_of_the_ledger_entries(store, trade):
    """Risk's book adds realised PnL with 100 significant digits; the sum a starting
    replica loads (services.store.risk_state.load) must be as exact, not rounded to the
    default context's 28 digits (an amount of 11 integer digits and 18 decimals has 29)."""
    from services.store.codec import Codec
    from services.store.risk_state import load

    apply(store, trade(Side.BUY, "1", "10000000000.000000000000000001", commission="0"),
          trade(Side.SELL, "1", "20000000000.000000000000000003", commission="0.000000000000000001"))

    with store.uow(read_only=True) as uow:
        exact = uow.positions.realised_since("acct-1", T0)
    with store.engine.connect() as connection, connection.begin():
        snapshot = load(connection, Codec(store.engine.dialect.name), now=T0, approved_since=T0, window_start=T0,
                        reset=T0)

    assert exact == D("10000000000.000000000000000001")
    assert snapshot.realised == [("acct-1", exact)]


def test_a_replica_started_before_the_reset_counts_a_fill_traded_after_it_on_its_own_day(store, trade):
    """A fill whose trade time is past the next reset (the venue's clock ahead of Risk's)
    is not the ending day's, and is the new day's once Risk's clock reaches the reset, in
    the book a replica starting now loads, as in the store's realised_since."""
    from services.risk.book import Book
    from services.risk.limits import RiskLimits
    from services.store.codec import Codec
    from services.store.risk_state import load

    midnight = dt.datetime(2030, 1, 8, tzinfo=dt.timezone.utc)
    starting = midnight - dt.timedelta(milliseconds=100)
    apply(store, trade(Side.BUY, "1", "100", at=midnight - dt.timedelta(hours=1), commission="0"),
          trade(Side.SELL, "1", "60", at=midnight + dt.timedelta(milliseconds=100), commission="0.5"))
    clock = [starting]
    book = Book(RiskLimits(allowed_symbols=frozenset({"BTCUSDT"}), max_notional_per_order=None,
                           max_quantity_per_order=None, max_price=None, reference_prices={}), clock=lambda: clock[0])
    reset = book.daily_reset.at(starting)
    with store.engine.connect() as connection, connection.begin():
        snapshot = load(connection, Codec(store.engine.dialect.name), now=starting, approved_since=starting,
                        window_start=starting, reset=reset)
    book.load_realised(snapshot.realised, reset, snapshot.realised_ahead)

    before = book.accounts["acct-1"].realised_since(reset)
    clock[0] = midnight
    after = book.accounts["acct-1"].realised_since(book.daily_reset.at(midnight))
    with store.uow(read_only=True) as uow:
        stored = uow.positions.realised_since("acct-1", midnight)

    assert (before, after, stored) == (D("0"), D("-40.5"), D("-40.5"))
