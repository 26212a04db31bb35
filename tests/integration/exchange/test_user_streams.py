"""The live provider's user-data stream against the simulator, the paths the other tests
leave out: the listenKey keepalive, the renewal after the venue expired the key, and a
dropped spot stream gap-filled from REST (the futures one: test_live_v3.py)."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import aiohttp

from services.domain import MarketType, OrderStatus
from services.exchange.aster.errors import VenueInDoubt
from services.exchange.providers.live import LiveProvider
from services.reliability.venue import VenueRecord

from venue_sim_support import WALLET_A, running_venue, wallet
from test_live_v3 import limit, ready, run, until


async def started(venue, **options):
    """The provider of WALLET_A's API wallet, started, and the list its stream's reports go to."""
    venue.register(WALLET_A)
    credentials = wallet()
    provider = LiveProvider(venue.transport(credentials=credentials), poll_seconds=0, reconnect_seconds=0.05,
                            **options)
    streamed = []

    async def sink(reports):
        streamed.extend(reports)

    await provider.start(sink)
    return provider, provider.sessions[credentials.account_key].streams, streamed


def test_the_listen_key_keepalive_reaches_the_venue_and_keeps_the_key_alive():
    async def scenario():
        # A key lives 1 s at this venue; the provider extends it every 0.1 s.
        async with running_venue(sim_options={"listen_key_ttl": 1.0}) as venue:
            provider, streams, _ = await started(venue, keepalive_seconds=0.1)
            stream = streams[MarketType.FUTURES]
            assert await stream.wait_connected(5)
            opened = time.monotonic()
            key = stream.listen_key
            # Past the key's 1 s lifetime twice over, every keepalive extending it.
            await until(lambda: len(venue.requests("PUT", "/listenKey")) >= 20 and time.monotonic() - opened > 2.0,
                        timeout=15)
            held = venue.sim.streams.keys.get(key)
            state = (stream.connected, stream.connections, stream.listen_key, held is not None)
            keepalives = venue.requests("PUT", "/listenKey")
            await provider.close()
            return key, state, keepalives, venue.requests("POST", "/listenKey")

    key, (connected, connections, listen_key, held), keepalives, created = run(scenario)

    assert {r["path"] for r in keepalives} == {"/fapi/v3/listenKey"}  # the API wallet's path
    assert connected and connections == 1 and listen_key == key and held  # never expired, never renewed
    assert len(created) == 1


def test_an_expired_listen_key_is_renewed_and_the_fill_made_meanwhile_is_gap_filled(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider, streams, streamed = await started(venue)
            stream = streams[MarketType.FUTURES]
            assert await stream.wait_connected(5)
            await ready(provider)
            first, second = limit(make_order, "63900", "0.2"), limit(make_order, "63800", "0.3")
            for order in (first, second):
                await provider.execute(order)
            expired_key = stream.listen_key

            def fills_of(order):
                return [r for r in streamed if r.fill and r.order_id == order.order_id]

            # The venue expires the key (as an hour without a keepalive would), and refuses a
            # new socket for a while: the first fill happens with no stream to carry it.
            venue.sim.streams.refuse_until = time.monotonic() + 0.4
            async with aiohttp.ClientSession() as control:
                async with control.post(f"{venue.url}/_sim/ws/expire", json={}) as answer:
                    expired = (await answer.json())["expired"]
            await until(lambda: not stream.connected)
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("63890"))
            await until(lambda: fills_of(first) and stream.connected, timeout=10)
            renewed_key = stream.listen_key
            # Renewed: the next fill comes on the stream again.
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("63790"))
            await until(lambda: fills_of(second))
            await asyncio.sleep(0.3)  # anything doubled would have arrived by now
            venue_trades = [VenueRecord.trade_id(t) for t in venue.sim.state.accounts[WALLET_A[0]].trades]
            sources = [json.loads(fills_of(order)[0].raw_json) for order in (first, second)]
            state = (stream.connections, {r["path"] for r in venue.requests("POST", "/listenKey")})
            await provider.close()
            return expired, expired_key, renewed_key, venue_trades, streamed, sources, state

    expired, expired_key, renewed_key, venue_trades, streamed, sources, (connections, paths) = run(scenario)

    assert expired == 1
    assert renewed_key != expired_key and connections == 2  # a new key (POST /listenKey again), a new socket
    assert paths == {"/fapi/v3/listenKey"}
    assert sorted(r.fill.trade_id for r in streamed if r.fill) == sorted(venue_trades)  # none lost, none twice
    assert len(venue_trades) == 2
    assert "userTrade" in sources[0]  # made while no stream was up: from REST when it came back
    assert sources[1]["event"]["e"] == "ORDER_TRADE_UPDATE"  # on the renewed stream


def test_a_dropped_spot_stream_is_gap_filled_from_rest_and_no_fill_is_lost_or_doubled(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider, streams, streamed = await started(venue)
            orders = [limit(make_order, price, "1", symbol="ETHUSDT", market_type=MarketType.SPOT)
                      for price in ("3195", "3190", "3185")]
            answers = []
            for order in orders:
                answers += await provider.execute(order)
            stream = streams[MarketType.SPOT]
            assert await stream.wait_connected(5)

            def fills_of(order):
                return [r for r in streamed + answers if r.fill and r.order_id == order.order_id]

            venue.sim.state.set_price("spot", "ETHUSDT", Decimal("3194"))  # the first, on the stream
            await until(lambda: fills_of(orders[0]))
            # Dropped, and reconnects refused for a while: two fills happen unseen.
            venue.sim.streams.refuse_until = time.monotonic() + 0.4
            await venue.sim.streams.drop_all()
            await until(lambda: not stream.connected)
            venue.sim.state.set_price("spot", "ETHUSDT", Decimal("3189"))
            venue.sim.state.set_price("spot", "ETHUSDT", Decimal("3184"))
            await until(lambda: fills_of(orders[1]) and fills_of(orders[2]) and stream.connected, timeout=10)
            await asyncio.sleep(0.3)  # anything doubled would have arrived by now
            venue_trades = [VenueRecord.trade_id(t) for t in venue.sim.state.accounts[WALLET_A[0]].trades]
            all_fills = [r.fill.trade_id for r in streamed + answers if r.fill]
            sources = [json.loads(fills_of(order)[0].raw_json) for order in orders]
            trade_reads = venue.requests("GET", "/userTrades")
            connections = stream.connections
            await provider.close()
            return venue_trades, all_fills, sources, trade_reads, connections, streamed

    venue_trades, all_fills, sources, trade_reads, connections, streamed = run(scenario)

    assert len(venue_trades) == 3
    assert sorted(all_fills) == sorted(venue_trades)  # none lost, none twice
    assert connections >= 2
    assert sources[0]["event"]["e"] == "executionReport"  # on the stream
    assert "userTrade" in sources[1] and "userTrade" in sources[2]  # from REST on reconnect
    assert {r["path"] for r in trade_reads} == {"/api/v3/userTrades"}  # spot's, by orderId
    assert all(r.order_status is OrderStatus.FILLED for r in streamed if r.fill)


def test_fills_streamed_for_an_order_whose_placement_call_was_cancelled_are_reported(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider, streams, streamed = await started(venue)
            assert await streams[MarketType.FUTURES].wait_connected(5)
            await ready(provider)
            order = limit(make_order, "63900", "0.2")
            # The venue takes the order and its answer never comes; the caller gives up
            # (the OMS's deadline cancels the call) while the stream has told of the order.
            venue.fault("drop_response", method="POST", path="/order", delay=3)
            placing = asyncio.ensure_future(provider.execute(order))
            await until(lambda: any(o.client_order_id == order.client_order_id
                                    for o in venue.sim.state.orders.values()))
            await asyncio.sleep(0.2)
            placing.cancel()
            await asyncio.gather(placing, return_exceptions=True)
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("63850"))  # the order fills
            await until(lambda: any(r.fill for r in streamed if r.order_id == order.order_id), timeout=3)
            await provider.close()
            return [r for r in streamed if r.order_id == order.order_id]

    reports = run(scenario)

    assert [r.order_status for r in reports] == [OrderStatus.ACCEPTED, OrderStatus.FILLED]
    assert reports[-1].fill.quantity == Decimal("0.2")


def test_a_placement_answered_without_an_order_id_is_in_doubt_and_its_streamed_fills_still_go_out(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider, streams, streamed = await started(venue)
            assert await streams[MarketType.FUTURES].wait_connected(5)
            await ready(provider)
            order = limit(make_order, "63900", "0.2")
            # The venue takes the order; what comes back is a 200 that is not the venue's answer.
            venue.fault("garbled_2xx", method="POST", path="/order")
            try:
                await provider.execute(order)
            except Exception as error:  # noqa: BLE001 - what it raised is the subject
                raised = error
            else:
                raised = None
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("63850"))  # the order fills
            await until(lambda: any(r.fill for r in streamed if r.order_id == order.order_id), timeout=3)
            await provider.close()
            return raised, [r for r in streamed if r.order_id == order.order_id], venue.sim.placements

    raised, reports, placements = run(scenario)

    assert isinstance(raised, VenueInDoubt) and raised.reason == "VENUE_ANSWER_UNKNOWN"
    assert [r.order_status for r in reports] == [OrderStatus.ACCEPTED, OrderStatus.FILLED]
    assert list(placements.values()) == [1]  # never resent
