"""The reconciler's position check on a real store (SQLite), with a scripted Exchange
answering ListVenuePositions and a clock of the test's: a difference from the venue that
every check sees unchanged for 5 s is recorded once as a VENUE_POSITION_MISMATCH anomaly;
a moving one (fills landing) is not."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

import core_ext
from venue_sim_support import build_order
from services.domain import MarketType, Side, Trade, utcnow
from services.oms.position_check import KIND, PositionCheck
from services.store.database import Database
from tessera.common.v1 import types_pb2 as common_pb
from tessera.exchange.v1 import exchange_pb2

KEYRING = core_ext.KeyRing("pos1", b"position-check-test-secret-0123456789abcdef")
D = Decimal


class ScriptedExchange:
    def __init__(self, mode: int = common_pb.EXECUTION_MODE_LIVE) -> None:
        self.mode = mode
        self.held: dict[str, str] = {}
        self.credentials: list[str] = []

    async def ListVenuePositions(self, request, timeout=None, metadata=None):
        self.credentials += [value for key, value in metadata or () if key == "tessera-oms-credential"]
        return exchange_pb2.ListVenuePositionsResponse(mode=self.mode, positions=[
            exchange_pb2.VenuePosition(symbol=s, market_type=common_pb.MARKET_TYPE_FUTURES, quantity=q)
            for s, q in self.held.items()])


@pytest.fixture
def db(tmp_path):
    database = Database.from_url(f"sqlite:///{tmp_path / 'positions.db'}")
    yield database
    database.close()


def hold(db, account: str, symbol: str, side: Side, quantity: str, market: MarketType = MarketType.FUTURES) -> None:
    """A fill in the ledger, as Risk would have written it."""
    order = build_order(account=account, symbol=symbol, market_type=market)
    order.record_creation()
    trade = Trade(trade_id=f"t-{uuid.uuid4().hex[:10]}", venue="aster", order_id=order.order_id, account=account,
                  symbol=symbol, side=side, quantity=D(quantity), price=D("100"), trade_time=utcnow())

    def write(uow):
        uow.orders.add(order)
        uow.trades.add_if_absent(trade)
        uow.positions.apply_trade(trade, market)

    db.run_sync(write)


def anomalies(db) -> list:
    return [a for a in db.run_sync(lambda uow: uow.anomalies.list(limit=100)) if a.kind == KIND]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def checker_for(db, exchange) -> tuple[PositionCheck, Clock]:
    clock = Clock()
    return PositionCheck(db, KEYRING, exchange, settle_seconds=5, monotonic=clock), clock


def check(db, checker: PositionCheck, clock: Clock | None = None, after: float = 0.0) -> list:
    if clock is not None:
        clock.now += after
    return asyncio.run(checker.check())


def test_agreeing_positions_summed_over_accounts_record_nothing(db):
    hold(db, "desk-1", "BTCUSDT", Side.BUY, "0.3")
    hold(db, "desk-2", "BTCUSDT", Side.SELL, "0.1")
    hold(db, "desk-2", "BTCUSDT", Side.BUY, "5", MarketType.SPOT)  # spot is not compared
    exchange = ScriptedExchange()
    exchange.held = {"BTCUSDT": "0.2"}
    checker, clock = checker_for(db, exchange)

    assert check(db, checker) == [] and check(db, checker, clock, after=30) == []
    assert anomalies(db) == []
    assert exchange.credentials and all(exchange.credentials)  # the OMS's per-call credential was sent


def test_a_difference_that_persists_for_the_settling_time_is_recorded_once(db):
    hold(db, "desk-1", "ETHUSDT", Side.BUY, "1")
    exchange = ScriptedExchange()
    exchange.held = {"ETHUSDT": "1.5", "SOLUSDT": "-2"}  # 0.5 ETH and a SOL short Tessera never traded
    checker, clock = checker_for(db, exchange)

    assert check(db, checker) == []  # seen once: perhaps a fill still landing
    assert check(db, checker, clock, after=4.9) == []  # not yet settled
    recorded = check(db, checker, clock, after=0.1)
    assert [(m.symbol, m.difference) for m in recorded] == [("ETHUSDT", D("0.5")), ("SOLUSDT", D("-2"))]
    assert check(db, checker, clock, after=60) == []  # said once
    stored = anomalies(db)
    assert len(stored) == 2 and {a.payload["symbol"] for a in stored} == {"ETHUSDT", "SOLUSDT"}
    eth = next(a for a in stored if a.payload["symbol"] == "ETHUSDT")
    assert eth.payload == {"symbol": "ETHUSDT", "market_type": "FUTURES", "venue_quantity": "1.5",
                           "ledger_quantity": "1", "difference": "0.5"}
    assert "the venue holds 1.5, Tessera's ledger 1" in eth.detail and eth.order_id is None


def test_a_difference_that_moves_is_not_recorded_and_one_resolved_is_recorded_again_when_it_returns(db):
    exchange = ScriptedExchange()
    checker, clock = checker_for(db, exchange)
    for venue in ("0.1", "0.2", "0.3", "0.4"):  # the venue moves ahead of the ledger each time
        exchange.held = {"BTCUSDT": venue}
        assert check(db, checker, clock, after=3) == []

    assert check(db, checker, clock, after=5) != []  # 0.4 stayed put: recorded
    exchange.held = {}
    assert check(db, checker, clock, after=5) == []  # agreement: forgotten
    exchange.held = {"BTCUSDT": "0.4"}
    assert check(db, checker, clock, after=5) == []
    assert [m.symbol for m in check(db, checker, clock, after=5)] == ["BTCUSDT"]  # recorded anew


def test_paper_and_shadow_compare_nothing(db):
    exchange = ScriptedExchange(common_pb.EXECUTION_MODE_PAPER)
    exchange.held = {"BTCUSDT": "1"}
    checker, clock = checker_for(db, exchange)

    assert check(db, checker) == [] and check(db, checker, clock, after=30) == []
    assert anomalies(db) == []


class RegistryExchange:
    """An Exchange with a venue accounts registry: positions per configured account."""

    def __init__(self, accounts: list[str]) -> None:
        self.accounts = accounts
        self.held: dict[tuple[str, str], str] = {}

    async def ListVenuePositions(self, request, timeout=None, metadata=None):
        return exchange_pb2.ListVenuePositionsResponse(mode=common_pb.EXECUTION_MODE_LIVE, accounts=self.accounts,
                                                       positions=[
            exchange_pb2.VenuePosition(account=a, symbol=s, market_type=common_pb.MARKET_TYPE_FUTURES, quantity=q)
            for (a, s), q in self.held.items()])


def test_with_a_registry_each_venue_account_is_compared_with_its_own_tessera_account(db):
    hold(db, "desk-a", "BTCUSDT", Side.BUY, "2")
    hold(db, "desk-b", "BTCUSDT", Side.SELL, "1")
    hold(db, "paper-only", "BTCUSDT", Side.BUY, "5")  # not at the venue: not compared
    exchange = RegistryExchange(["desk-a", "desk-b"])
    # Summed over accounts both venues' positions equal the ledger's desk-a + desk-b (1),
    # but desk-b's venue account holds desk-a's position and the other way round.
    exchange.held = {("desk-a", "BTCUSDT"): "-1", ("desk-b", "BTCUSDT"): "2"}
    checker, clock = checker_for(db, exchange)

    assert check(db, checker, clock) == []
    recorded = check(db, checker, clock, after=6)

    assert sorted((m.account, m.venue_quantity, m.ledger_quantity) for m in recorded) == [
        ("desk-a", D("-1"), D("2")), ("desk-b", D("2"), D("-1"))]
    payloads = sorted((a.payload["account"], a.payload["difference"]) for a in anomalies(db))
    assert payloads == [("desk-a", "-3"), ("desk-b", "3")]

    exchange.held = {("desk-a", "BTCUSDT"): "2", ("desk-b", "BTCUSDT"): "-1"}  # they agree again
    assert check(db, checker, clock, after=6) == [] and len(anomalies(db)) == 2
