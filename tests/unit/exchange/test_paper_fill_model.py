"""The paper fill model: book walking, partial fills, maker fills on price moves, price sources."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from services.domain import LiquiditySide, OrderStatus, OrderType, Side, TimeInForce
from services.exchange.providers.books import BookShape, RandomWalkPrices, RecordedPrices, StaticPrices
from services.exchange.providers.paper import PaperFees, PaperProvider
from services.exchange.venue import OrderRef

FEES = PaperFees(maker=Decimal("0.0002"), taker=Decimal("0.0004"))
SHAPE = BookShape(spread_bps=Decimal("10"), levels=3, level_quantity=Decimal("1"), level_step_bps=Decimal("10"))


def run(awaitable):
    return asyncio.run(awaitable)


def paper(prices=None, **options) -> PaperProvider:
    return PaperProvider(prices or {"BTCUSDT": Decimal("100")}, FEES, **options)


def test_market_order_walks_the_book_one_trade_per_level_with_slippage(make_order):
    provider = paper(shape=SHAPE)
    order = make_order(order_type=OrderType.MARKET, price=None, quantity=Decimal("2.5"))

    reports = run(provider.execute(order))

    # asks at 100 * (1 + 5bps), (1 + 15bps), (1 + 25bps), 1 each
    assert [(r.fill.price, r.fill.quantity) for r in reports] == [
        (Decimal("100.05"), Decimal("1")),
        (Decimal("100.15"), Decimal("1")),
        (Decimal("100.25"), Decimal("0.5")),
    ]
    assert [r.order_status for r in reports] == [OrderStatus.PARTIALLY_FILLED] * 2 + [OrderStatus.FILLED]
    assert reports[0].fill.commission == Decimal("0.04002")  # taker fee on 100.05
    assert len({r.fill.trade_id for r in reports}) == 3


def test_market_order_larger_than_the_book_fills_partially_and_the_rest_expires(make_order):
    provider = paper(shape=SHAPE)

    reports = run(provider.execute(make_order(order_type=OrderType.MARKET, price=None, quantity=Decimal("5"))))

    assert sum(r.fill.quantity for r in reports if r.fill) == Decimal("3")
    assert reports[-1].order_status is OrderStatus.EXPIRED and reports[-1].reason == "REMAINDER_EXPIRED"
    assert reports[-1].cumulative_quantity == Decimal("3")


def test_fok_order_the_book_cannot_fill_expires_without_a_trade(make_order):
    provider = paper(shape=SHAPE)
    order = make_order(price=Decimal("101"), quantity=Decimal("5"), time_in_force=TimeInForce.FOK)

    (report,) = run(provider.execute(order))

    assert report.order_status is OrderStatus.EXPIRED and report.fill is None


def test_limit_order_takes_what_crosses_and_rests_the_rest_then_fills_as_maker_when_the_price_crosses(make_order):
    source = StaticPrices({"BTCUSDT": Decimal("100")})
    provider = PaperProvider(source, FEES, shape=SHAPE)
    order = make_order(price=Decimal("100.10"), quantity=Decimal("1.5"))

    taken = run(provider.execute(order))
    source.set("BTCUSDT", Decimal("99"))
    later = run(provider.tick())

    assert [(r.fill.price, r.fill.quantity) for r in taken] == [(Decimal("100.05"), Decimal("1"))]
    assert [(r.fill.price, r.fill.quantity, r.fill.liquidity_side) for r in later] == [
        (Decimal("100.10"), Decimal("0.5"), LiquiditySide.MAKER)
    ]
    assert later[0].fill.commission == Decimal("0.01001")  # maker fee
    assert later[0].order_status is OrderStatus.FILLED
    assert run(provider.tick()) == []


def test_a_resting_order_fills_partially_when_the_book_is_thin(make_order):
    source = StaticPrices({"BTCUSDT": Decimal("100")})
    provider = PaperProvider(source, FEES, shape=BookShape(levels=1, level_quantity=Decimal("0.4")))
    order = make_order(side=Side.SELL, price=Decimal("101"), quantity=Decimal("1"))

    assert [r.order_status for r in run(provider.execute(order))] == [OrderStatus.ACCEPTED]
    source.set("BTCUSDT", Decimal("102"))
    first = run(provider.tick())
    second = run(provider.tick())

    assert [r.fill.quantity for r in first] == [Decimal("0.4")]
    assert first[0].order_status is OrderStatus.PARTIALLY_FILLED
    assert [r.fill.quantity for r in second] == [Decimal("0.4")]
    state = run(provider.query_order(OrderRef.of(order)))
    assert state.found and state.executed_quantity == Decimal("0.8") and len(state.fills) == 2


def test_stop_order_triggers_on_a_price_move_and_then_takes(make_order):
    source = StaticPrices({"BTCUSDT": Decimal("100")})
    provider = PaperProvider(source, FEES)
    order = make_order(order_type=OrderType.STOP_MARKET, price=None, stop_price=Decimal("105"), quantity=Decimal("1"))

    assert [r.order_status for r in run(provider.execute(order))] == [OrderStatus.ACCEPTED]
    source.set("BTCUSDT", Decimal("106"))
    (report,) = run(provider.tick())

    assert report.fill.price == Decimal("106") and report.fill.liquidity_side is LiquiditySide.TAKER


def _walk_fills(seed: int, make_order) -> list[tuple[Decimal, Decimal]]:
    source = RandomWalkPrices({"BTCUSDT": Decimal("100")}, seed=seed, volatility=Decimal("0.01"))
    provider = PaperProvider(source, FEES, shape=BookShape(levels=1, level_quantity=Decimal("0.3")))
    run(provider.execute(make_order(price=Decimal("99"), quantity=Decimal("3"))))
    fills = []
    for _ in range(60):
        fills += [(r.fill.price, r.fill.quantity) for r in run(provider.tick())]
    return fills + [(source.current("BTCUSDT"), Decimal(0))]


def test_a_random_walk_is_deterministic_for_its_seed(make_order):
    assert _walk_fills(7, make_order) == _walk_fills(7, make_order)
    assert _walk_fills(7, make_order) != _walk_fills(8, make_order)


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_recorded_prices_replay_in_order_and_hold_the_last(tmp_path, suffix):
    path = tmp_path / f"prices{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps([{"BTCUSDT": "100"}, {"BTCUSDT": "101.5"}, {"BTCUSDT": "99"}]))
    else:
        path.write_text("step,symbol,price\n1,BTCUSDT,100\n2,BTCUSDT,101.5\n3,BTCUSDT,99\n")
    source = RecordedPrices.from_file(path)

    seen = [source.current("BTCUSDT")]
    for _ in range(4):
        source.advance()
        seen.append(source.current("BTCUSDT"))

    assert seen == [Decimal("100"), Decimal("101.5"), Decimal("99"), Decimal("99"), Decimal("99")]


def test_latency_delays_the_fill(make_order):
    provider = paper(latency_seconds=0.05)

    async def timed():
        loop = asyncio.get_running_loop()
        start = loop.time()
        await provider.execute(make_order(order_type=OrderType.MARKET, price=None))
        return loop.time() - start

    assert run(timed()) >= 0.05
