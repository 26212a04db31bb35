"""The live provider and its transport against the venue simulator (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from fakes import FakeClock

from services.domain import LiquiditySide, MarginMode, MarketType, OrderStatus, OrderType, Side, TimeInForce
from services.domain.errors import PreconditionFailed
from services.exchange.aster.errors import VenueInDoubt, VenueOrderUnknown, VenueRateLimited, VenueRejected
from services.exchange.aster.requests import prepare_book_ticker, prepare_query_order
from services.exchange.providers.live import LiveProvider
from services.exchange.venue import OrderRef
from services.reliability.venue import VenueRecord

from venue_sim_support import running_venue


def run(scenario):
    return asyncio.run(scenario())


async def ready(venue, symbol="BTCUSDT", **options) -> LiveProvider:
    provider = LiveProvider(venue.transport(**options), poll_seconds=0)
    await provider.set_leverage(symbol, 10)
    await provider.set_margin_mode(symbol, MarginMode.ISOLATED)
    return provider


def test_orders_are_refused_until_leverage_and_margin_mode_are_set(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0)
            with pytest.raises(PreconditionFailed) as no_leverage:
                await provider.execute(make_order())
            await provider.set_leverage("BTCUSDT", 5)
            with pytest.raises(PreconditionFailed) as no_margin:
                await provider.execute(make_order())
            await provider.set_margin_mode("BTCUSDT", MarginMode.ISOLATED)
            with pytest.raises(PreconditionFailed) as mismatch:
                await provider.execute(make_order(leverage=Decimal(3)))
            settings = dict(venue.sim.state.leverage), dict(venue.sim.state.margin_types)
            orders_sent = venue.requests("POST", "/order")
            await provider.close()
            return no_leverage.value, no_margin.value, mismatch.value, settings, orders_sent

    no_leverage, no_margin, mismatch, settings, orders_sent = run(scenario)

    assert no_leverage.reason == "LEVERAGE_NOT_SET"
    assert no_margin.reason == "MARGIN_MODE_NOT_SET"
    assert mismatch.reason == "LEVERAGE_MISMATCH"
    assert settings == ({"BTCUSDT": 5}, {"BTCUSDT": "ISOLATED"})
    assert orders_sent == []


def test_trades_the_venue_numbers_alike_in_two_symbols_are_two_fills_under_their_own_ids(make_order):
    """The venue numbers its trades per symbol: the first trade of BTCUSDT and the first
    of ETHUSDT carry the same number, and each fill is stored under an id of its own."""
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            await provider.set_leverage("ETHUSDT", 10)
            await provider.set_margin_mode("ETHUSDT", MarginMode.ISOLATED)
            btc = await provider.execute(make_order(quantity=Decimal("0.1")))
            eth = await provider.execute(make_order(symbol="ETHUSDT", side=Side.SELL, quantity=Decimal("0.1")))
            await provider.close()
            return btc, eth, venue.sim.state.trades

    btc, eth, venue_trades = run(scenario)

    (btc_fill,), (eth_fill,) = ([r.fill for r in reports if r.fill] for reports in (btc, eth))
    assert [t["id"] for t in venue_trades][0] == [t["id"] for t in venue_trades][1]  # one number, two symbols
    assert btc_fill.trade_id == f"BTCUSDT:{venue_trades[0]['id']}:BUY"
    assert eth_fill.trade_id == f"ETHUSDT:{venue_trades[1]['id']}:SELL"
    assert [btc_fill.trade_id, eth_fill.trade_id] == [VenueRecord.trade_id(t) for t in venue_trades]


def test_margin_mode_already_set_at_the_venue_counts_as_set():
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            again = await provider.set_margin_mode("BTCUSDT", MarginMode.ISOLATED)  # venue: -4046
            await provider.close()
            return again

    assert run(scenario) is MarginMode.ISOLATED


def test_market_order_walks_the_venue_book_and_reports_each_trade_once(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            order = make_order(quantity=Decimal("0.8"))  # levels of 0.5: two trades
            reports = await provider.execute(order)
            again = await provider.poll_once()
            await provider.close()
            return order, reports, again, venue.sim.state.trades

    order, reports, again, venue_trades = run(scenario)

    fills = [r.fill for r in reports if r.fill]
    assert [f.quantity for f in fills] == [Decimal("0.5"), Decimal("0.3")]
    assert [f.trade_id for f in fills] == [VenueRecord.trade_id(t) for t in venue_trades]
    assert fills[0].price < fills[1].price  # slippage: the second level is worse
    assert all(f.liquidity_side is LiquiditySide.TAKER and f.commission > 0 for f in fills)
    assert reports[-1].order_status is OrderStatus.FILLED and reports[-1].cumulative_quantity == Decimal("0.8")
    assert order.remote_order_id == str(venue_trades[0]["orderId"])
    assert all(r.order_id == order.order_id and r.client_order_id == order.client_order_id for r in reports)
    assert again == []


def test_resting_limit_order_fills_when_the_price_crosses_and_the_poller_reports_it(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            order = make_order(order_type=OrderType.LIMIT, price=Decimal("64000"), quantity=Decimal("0.3"))
            placed = await provider.execute(order)
            nothing = await provider.poll_once()
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("63990"))
            filled = await provider.poll_once()
            after = await provider.poll_once()
            await provider.close()
            return placed, nothing, filled, after

    placed, nothing, filled, after = run(scenario)

    assert [r.order_status for r in placed] == [OrderStatus.ACCEPTED]
    assert nothing == []
    assert len(filled) == 1 and filled[0].fill.price == Decimal("64000")
    assert filled[0].fill.liquidity_side is LiquiditySide.MAKER
    assert after == []


def test_cancel_of_a_resting_order_and_of_an_unknown_one(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            order = make_order(order_type=OrderType.LIMIT, price=Decimal("60000"))
            await provider.execute(order)
            cancelled = await provider.cancel(order.order_id)
            with pytest.raises(VenueOrderUnknown) as unknown:
                await provider.cancel("00000000-0000-4000-8000-000000000000", symbol="BTCUSDT", client_order_id="nope")
            await provider.close()
            return cancelled, unknown.value

    cancelled, unknown = run(scenario)

    assert cancelled.order_status is OrderStatus.CANCELLED
    assert unknown.reason == "UNKNOWN_ORDER"


def test_ioc_order_that_cannot_fill_expires_at_the_venue(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            order = make_order(order_type=OrderType.LIMIT, price=Decimal("60000"), time_in_force=TimeInForce.IOC)
            reports = await provider.execute(order)
            await provider.close()
            return reports

    assert [r.order_status for r in run(scenario)] == [OrderStatus.EXPIRED]


def test_insufficient_margin_is_a_rejection_and_nothing_rests(make_order):
    async def scenario():
        async with running_venue(balance=Decimal("10")) as venue:
            provider = await ready(venue)
            with pytest.raises(VenueRejected) as rejected:
                await provider.execute(make_order(quantity=Decimal("0.01")))
            await provider.close()
            return rejected.value, venue.sim.state.orders

    rejected, orders = run(scenario)

    assert rejected.reason == "MARGIN_INSUFFICIENT" and rejected.venue_code == -2019
    assert orders == {}


def test_a_quantity_off_the_step_is_refused_before_anything_is_sent(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            with pytest.raises(PreconditionFailed) as refused:
                await provider.execute(make_order(quantity=Decimal("0.0105")))
            sent = venue.requests("POST", "/order")
            await provider.close()
            return refused.value, sent

    refused, sent = run(scenario)

    assert refused.reason == "ORDER_NOT_REPRESENTABLE"
    assert sent == []


def test_a_wrong_secret_is_refused_by_the_venue_signature_check():
    async def scenario():
        async with running_venue() as venue:
            provider = LiveProvider(venue.transport(secret="not-the-secret"), poll_seconds=0)
            with pytest.raises(VenueRejected) as refused:
                await provider.set_leverage("BTCUSDT", 5)
            await provider.close()
            return refused.value

    assert run(scenario).reason == "VENUE_SIGNATURE_REJECTED"


def test_a_clock_outside_the_receive_window_rejects_an_order_once_but_a_read_resyncs_and_retries(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            provider.transport.clock_offset_ms = -60_000
            # -1021: the venue refused the request unprocessed; a rejection, not in doubt.
            with pytest.raises(VenueRejected) as order_error:
                await provider.execute(make_order())
            posts = len(venue.requests("POST", "/order"))
            provider.transport.clock_offset_ms = -60_000
            state = await provider.query_order(OrderRef("x", "never-sent", "a", "aster", "BTCUSDT", Side.BUY))
            await provider.close()
            return order_error.value, posts, state

    order_error, posts, state = run(scenario)

    assert order_error.reason == "VENUE_TIMESTAMP_OUTSIDE_RECV_WINDOW"
    assert posts == 1  # never resent
    assert state.found is False  # the read was retried with the venue's clock


def test_a_5xx_on_a_read_is_retried_and_on_an_order_is_in_doubt_and_never_resent(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            venue.fault("error_5xx", method="GET", path="/ticker/bookTicker", count=2)
            quote = await provider.quote("BTCUSDT")
            venue.fault("error_5xx", method="POST", path="/order", processed=True)
            order = make_order()
            with pytest.raises(VenueInDoubt):
                await provider.execute(order)
            posts = len(venue.requests("POST", "/order"))
            state = await provider.query_order(OrderRef.of(order))
            await provider.close()
            return quote, posts, state

    quote, posts, state = run(scenario)

    assert quote.bid < quote.ask
    assert posts == 1
    assert state.found and state.status is OrderStatus.FILLED and len(state.fills) == 1


@pytest.mark.parametrize("fault", [
    {"status": 409},  # a 4xx without the venue's JSON error body
    {"status": 408},
    {"status": 400, "code": -9999},  # the venue's body with a code Tessera does not map
])
def test_an_unmapped_4xx_to_an_order_the_venue_took_is_in_doubt_and_never_resent(make_order, fault):
    """The venue placed (and filled) the order, then answered a 4xx the mapping does not
    know: the order is in doubt, not rejected, so the reconciler finds it at the venue."""
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            venue.fault("error_4xx", method="POST", path="/order", processed=True, **fault)
            order = make_order()
            with pytest.raises(VenueInDoubt) as in_doubt:
                await provider.execute(order)
            posts = len(venue.requests("POST", "/order"))
            state = await provider.query_order(OrderRef.of(order))
            await provider.close()
            return in_doubt.value, posts, state

    in_doubt, posts, state = run(scenario)

    assert in_doubt.reason == "VENUE_ANSWER_UNKNOWN"
    assert f"HTTP {fault['status']}" in str(in_doubt)
    assert posts == 1
    assert state.found and state.status is OrderStatus.FILLED and state.executed_quantity == Decimal("0.01")


def test_a_4xx_with_a_known_venue_code_is_still_a_rejection(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            venue.fault("error_4xx", method="POST", path="/order", status=400, code=-2019)
            with pytest.raises(VenueRejected) as rejected:
                await provider.execute(make_order())
            venue_orders = len(venue.sim.state.orders)
            await provider.close()
            return rejected.value, venue_orders

    rejected, venue_orders = run(scenario)

    assert rejected.reason == "MARGIN_INSUFFICIENT" and rejected.venue_code == -2019
    assert venue_orders == 0


def test_a_dropped_answer_leaves_the_order_in_doubt_and_the_venue_knows_it(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            venue.fault("drop_response", method="POST", path="/order", delay=3)
            order = make_order()
            with pytest.raises(VenueInDoubt) as in_doubt:
                await provider.execute(order)
            state = await provider.query_order(OrderRef.of(order))
            await provider.close()
            return in_doubt.value, state, len(venue.sim.state.orders)

    in_doubt, state, venue_orders = run(scenario)

    assert in_doubt.reason == "VENUE_TIMEOUT"
    assert venue_orders == 1
    assert state.found and state.executed_quantity == Decimal("0.01")
    assert [f.fill.quantity for f in state.fills] == [Decimal("0.01")]


def test_a_late_fill_is_reported_once_by_the_poller(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            venue.fault("late_fill", method="POST", path="/order", delay=0.2)
            order = make_order()
            placed = await provider.execute(order)
            await asyncio.sleep(0.4)
            first = await provider.poll_once()
            second = await provider.poll_once()
            await provider.close()
            return placed, first, second

    placed, first, second = run(scenario)

    assert [r.order_status for r in placed] == [OrderStatus.ACCEPTED]
    assert [r.fill.quantity for r in first if r.fill] == [Decimal("0.01")]
    assert second == []


@pytest.mark.parametrize(("kind", "reason"), [("rate_limit_429", "VENUE_RATE_LIMITED"), ("ban_418", "VENUE_IP_BANNED")])
def test_after_a_rate_limit_answer_nothing_is_sent_until_retry_after(kind, reason):
    async def scenario():
        clock = FakeClock(dt.datetime.now(dt.timezone.utc))  # the backoff and the ban on a clock the test moves
        async with running_venue(sim_options={"monotonic": clock.monotonic}) as venue:
            provider = LiveProvider(venue.transport(clock=clock.time), poll_seconds=0)
            venue.fault(kind, method="GET", path="/ticker/bookTicker", retry_after=1)
            with pytest.raises(VenueRateLimited) as first:
                await provider.quote("BTCUSDT")
            sent = len(venue.requests())
            clock.advance(0.999)
            with pytest.raises(VenueRateLimited) as second:
                await provider.quote("BTCUSDT")
            held_back = len(venue.requests()) == sent
            clock.advance(0.001)
            quote = await provider.quote("BTCUSDT")
            await provider.close()
            return first.value, second.value, held_back, quote

    first, second, held_back, quote = run(scenario)

    assert first.reason == reason and first.retry_after == 1
    assert second.reason == reason
    assert held_back
    assert quote.ask > 0


def test_quotes_asked_together_or_within_the_window_are_one_venue_read_and_a_later_one_reads_again():
    async def scenario():
        async with running_venue() as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0, mark_price_seconds=0.3)
            together = await asyncio.gather(*(provider.quote("BTCUSDT") for _ in range(5)))
            again = await provider.quote("BTCUSDT")
            reads_within = len(venue.requests("GET", "/ticker/bookTicker"))
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("70000"))
            await asyncio.sleep(0.35)
            later = await provider.quote("BTCUSDT")
            reads = len(venue.requests("GET", "/ticker/bookTicker"))
            await provider.close()
            return together, again, reads_within, later, reads

    together, again, reads_within, later, reads = run(scenario)

    assert reads_within == 1 and len({q.ask for q in together}) == 1 and again == together[0]
    assert reads == 2 and later.ask > together[0].ask


def test_the_transport_tracks_used_weight_from_the_answers():
    async def scenario():
        async with running_venue() as venue:
            transport = venue.transport()
            for _ in range(3):
                await transport.send(prepare_book_ticker("BTCUSDT"))
            used = transport.gate.used
            await transport.close()
            return used, venue.sim._weight_used

    used, venue_used = run(scenario)

    assert used == venue_used == 3


def test_cancel_all_reports_each_followed_order(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            orders = [make_order(order_type=OrderType.LIMIT, price=Decimal(p)) for p in ("60000", "61000")]
            for order in orders:
                await provider.execute(order)
            reports = await provider.cancel_all("BTCUSDT")
            await provider.close()
            return orders, reports

    orders, reports = run(scenario)

    assert sorted(r.order_id for r in reports) == sorted(o.order_id for o in orders)
    assert all(r.order_status is OrderStatus.CANCELLED for r in reports)


def test_spot_orders_go_to_the_spot_market_without_leverage(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0)
            order = make_order(market_type=MarketType.SPOT, symbol="ETHUSDT", quantity=Decimal("0.5"))
            reports = await provider.execute(order)
            await provider.close()
            return reports, venue.requests("POST")

    reports, posts = run(scenario)

    assert reports[-1].order_status is OrderStatus.FILLED
    assert reports[-1].fill.trade_id.startswith("spot:")
    assert [p["path"] for p in posts] == ["/api/v1/order"]


def test_query_of_an_order_the_venue_never_saw_is_not_found():
    async def scenario():
        async with running_venue() as venue:
            transport = venue.transport()
            with pytest.raises(VenueOrderUnknown):
                await transport.send(prepare_query_order("BTCUSDT", "nobody"))
            await transport.close()

    run(scenario)


def test_an_order_the_venue_filled_is_not_refused_when_reading_its_trades_is(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            # The order is placed and FILLED; every read of its trades is refused (-1021, retries included).
            venue.fault("bad_timestamp", method="GET", path="/userTrades", count=3)
            order = make_order(quantity=Decimal("0.8"))
            placed = await provider.execute(order)
            owed = await provider.poll_once()
            await provider.close()
            return order, placed, owed

    order, placed, owed = run(scenario)

    assert order.remote_order_id is not None
    assert placed == []  # nothing known yet but that the venue took it: the fills are owed
    assert [r.fill.quantity for r in owed if r.fill] == [Decimal("0.5"), Decimal("0.3")]
    assert owed[-1].order_status is OrderStatus.FILLED


def test_fills_owed_by_an_order_a_poll_passed_while_it_was_being_placed_are_read_by_the_next_poll(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            resting = make_order(order_type=OrderType.LIMIT, price=Decimal("60000"), quantity=Decimal("0.1"))
            await provider.execute(resting)  # followed: the symbol's trades are polled
            send = provider.transport.exchange

            async def placed_while_the_poller_runs(request, credentials=None):
                answer = await send(request, credentials)
                if request.method == "POST" and request.path.endswith("/order"):
                    await provider.poll_once()  # the poller reads the new trades before the answer is handled
                    venue.fault("bad_timestamp", method="GET", path="/userTrades", count=3)  # then reads fail
                return answer

            provider.transport.exchange = placed_while_the_poller_runs
            order = make_order(quantity=Decimal("0.8"))
            placed = await provider.execute(order)
            provider.transport.exchange = send
            owed = await provider.poll_once()
            await provider.close()
            return placed, owed

    placed, owed = run(scenario)

    assert placed == []
    assert [r.fill.quantity for r in owed if r.fill] == [Decimal("0.5"), Decimal("0.3")]
    assert owed[-1].order_status is OrderStatus.FILLED


def _limit(make_order, price, **fields):
    return make_order(order_type=OrderType.LIMIT, price=Decimal(price), quantity=Decimal("0.1"), **fields)


def test_a_venue_refusal_naming_a_filter_reads_the_symbols_rules_again_for_the_next_order(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            provider.round_prices = False  # as the live Exchange runs: an off-tick price is refused
            await provider.execute(_limit(make_order, "64000.3"))  # tick 0.1: the rules are read
            venue.sim.state.specs["BTCUSDT"].tick = Decimal("0.5")  # the venue changes the tick
            with pytest.raises(VenueRejected) as at_venue:
                await provider.execute(_limit(make_order, "64000.3"))
            posts = len(venue.requests("POST", "/order"))
            with pytest.raises(PreconditionFailed) as here:
                await provider.execute(_limit(make_order, "64000.3"))
            refused_here = len(venue.requests("POST", "/order")) == posts
            on_new_tick = await provider.execute(_limit(make_order, "64000.5"))
            await provider.close()
            return at_venue.value, here.value, refused_here, on_new_tick

    at_venue, here, refused_here, on_new_tick = run(scenario)

    assert at_venue.reason == "PRICE_NOT_ON_TICK" and at_venue.venue_code == -4014
    assert here.reason == "PRICE_NOT_ON_TICK" and refused_here  # the new tick, known before sending
    assert on_new_tick[0].order_status is OrderStatus.ACCEPTED


def test_rules_older_than_rules_seconds_are_read_again_before_an_order(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            provider.round_prices = False
            provider.rules_seconds = 0.0  # every order reads them again
            await provider.execute(_limit(make_order, "64000.3"))
            venue.sim.state.specs["BTCUSDT"].tick = Decimal("0.05")  # a finer tick: nothing refuses
            finer = await provider.execute(_limit(make_order, "64000.35"))
            await provider.close()
            return finer

    finer = run(scenario)

    assert finer[0].order_status is OrderStatus.ACCEPTED


def test_an_order_refused_for_its_position_side_reads_the_position_mode_again_for_the_next_one(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = await ready(venue)
            await provider.load_settings()  # one-way mode
            # The account is put in hedge mode outside Tessera (the venue's web page).
            venue.sim.state.account("default").dual_side = True
            with pytest.raises(VenueRejected) as refused:
                await provider.execute(make_order())
            placed = await provider.execute(make_order())
            params = venue.requests("POST", "/order")[-1]["params"]
            await provider.close()
            return refused.value, placed, params, provider.session().hedge_mode

    refused, placed, params, hedge_mode = run(scenario)

    assert refused.reason == "POSITION_SIDE_MISMATCH"
    assert hedge_mode is True and params["positionSide"] == "LONG"
    assert placed[-1].order_status is OrderStatus.FILLED
