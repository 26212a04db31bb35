"""The live provider over Aster's V3 API against the simulator: API wallets, accounts side by
side, the user-data stream and its gap-fill, the venue's rules, raw payloads."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest

from services.domain import MarginMode, MarketType, OrderStatus, OrderType, Side
from services.exchange.aster.credentials import HmacCredentials
from services.exchange.aster.errors import VenueRateLimited, VenueRejected
from services.exchange.aster.requests import prepare_listen_key
from services.exchange.aster.signing import sign_request
from services.exchange.providers.live import LiveProvider
from services.reliability.venue import VenueRecord

from venue_sim_support import API_KEY, API_SECRET, WALLET_A, WALLET_B, running_venue, streaming_provider, wallet


def run(scenario):
    return asyncio.run(scenario())


async def until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def ready(provider, symbol="BTCUSDT", account=None):
    await provider.set_leverage(symbol, 10, account=account)
    await provider.set_margin_mode(symbol, MarginMode.ISOLATED, account=account)


def limit(make_order, price, quantity="0.2", **fields):
    return make_order(order_type=OrderType.LIMIT, price=Decimal(price), quantity=Decimal(quantity), **fields)


def test_a_v3_order_goes_to_the_v3_paths_signed_by_the_api_wallet_and_fills(make_order):
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A)
            provider = LiveProvider(venue.transport(credentials=wallet()), poll_seconds=0)
            await ready(provider)
            order = make_order(quantity=Decimal("0.8"))
            reports = await provider.execute(order)
            paths = {r["path"] for r in venue.sim.requests}
            await provider.close()
            return reports, paths, venue.sim.state.accounts[WALLET_A[0]].trades

    reports, paths, trades = run(scenario)

    assert {"/fapi/v3/order", "/fapi/v3/leverage", "/fapi/v3/marginType", "/fapi/v3/userTrades"} <= paths
    assert not any(path.startswith("/fapi/v1/") and path != "/fapi/v1/time" for path in paths)
    assert [r.fill.trade_id for r in reports if r.fill] == [VenueRecord.trade_id(t) for t in trades]
    assert reports[-1].order_status is OrderStatus.FILLED


def test_every_report_carries_its_venue_payload_as_exact_json_with_integer_ids(make_order):
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A)
            provider = LiveProvider(venue.transport(credentials=wallet()), poll_seconds=0)
            await ready(provider)
            resting = await provider.execute(limit(make_order, "60000"))
            cancelled = await provider.cancel(resting[0].order_id)
            filled = await provider.execute(make_order(quantity=Decimal("0.3")))
            await provider.close()
            return resting[0], cancelled, filled

    accepted, cancelled, filled = run(scenario)

    placement = json.loads(accepted.raw_json)
    assert placement["request"]["path"] == "/fapi/v3/order"
    assert placement["request"]["params"]["price"] == "60000"
    assert not {"signature", "nonce", "user", "signer"} & set(placement["request"]["params"])
    assert isinstance(placement["response"]["orderId"], int) and placement["status"] == 200
    assert json.loads(cancelled.raw_json)["response"]["status"] == "CANCELED"
    assert cancelled.order_status is OrderStatus.CANCELLED
    trade = json.loads(filled[0].raw_json)["userTrade"]
    assert isinstance(trade["id"], int) and VenueRecord.trade_id(trade) == filled[0].fill.trade_id
    assert '"orderId":' + str(trade["orderId"]) in filled[0].raw_json  # the integer as the venue wrote it


def test_two_accounts_trade_side_by_side_each_with_its_own_credentials_and_settings(make_order):
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A, WALLET_B)
            venue.sim.add_api_key("key-c", "secret-c-0123456789", account="account-c")
            accounts = {"acct-a": wallet(WALLET_A), "acct-b": wallet(WALLET_B),
                        "acct-c": HmacCredentials("key-c", "secret-c-0123456789")}
            provider = LiveProvider(venue.transport(credentials=None), poll_seconds=0,
                                    credentials_for=accounts.get)
            await ready(provider, account="acct-a")
            await ready(provider, account="acct-c")
            from services.domain.errors import PreconditionFailed

            with pytest.raises(PreconditionFailed) as unset:
                await provider.execute(make_order(account="acct-b"))  # settings are per account
            a = await provider.execute(make_order(account="acct-a", quantity=Decimal("0.1")))
            c = await provider.execute(make_order(account="acct-c", quantity=Decimal("0.2")))
            held = {name: [(o.client_order_id, str(o.quantity)) for o in acc.orders.values()]
                    for name, acc in venue.sim.state.accounts.items()}
            await provider.close()
            return unset.value, a, c, held

    unset, a, c, held = run(scenario)

    assert unset.reason == "LEVERAGE_NOT_SET"
    assert held[WALLET_A[0]] == [(a[0].client_order_id, "0.1")]
    assert held["account-c"] == [(c[0].client_order_id, "0.2")]
    assert held[WALLET_B[0]] == [] and held["default"] == []
    assert a[-1].order_status is OrderStatus.FILLED and c[-1].order_status is OrderStatus.FILLED


def test_a_signer_the_venue_does_not_know_and_a_testnet_signature_are_refused():
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A)
            stranger = LiveProvider(venue.transport(credentials=wallet(WALLET_B)), poll_seconds=0)
            testnet = LiveProvider(venue.transport(credentials=wallet(WALLET_A, chain_id=714)), poll_seconds=0)
            errors = []
            for provider in (stranger, testnet):
                with pytest.raises(VenueRejected) as refused:
                    await provider.set_leverage("BTCUSDT", 5)
                errors.append(refused.value)
                await provider.close()
            return errors, venue.sim.state.accounts.get(WALLET_A[0]).leverage

    (stranger, testnet), leverage = run(scenario)

    assert stranger.reason == "VENUE_UNAUTHORIZED"
    assert testnet.reason == "VENUE_SIGNATURE_REJECTED" and testnet.venue_code == -1022
    assert leverage == {}


def test_a_replayed_v3_request_is_refused_by_its_nonce():
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A)
            transport = venue.transport(credentials=wallet())
            signed = sign_request(prepare_listen_key(), transport.credentials, timestamp_ms=0)
            answers = []
            for _ in range(2):
                async with transport.session.post(venue.url + signed.path, data=signed.body.encode(),
                                                  headers=signed.headers) as response:
                    answers.append((response.status, await response.json()))
            await transport.close()
            return answers

    first, second = run(scenario)

    assert first[0] == 200 and "listenKey" in first[1]
    assert second == (400, {"code": -4225, "msg": "Nonce Expired"})


@pytest.mark.parametrize("poll_seconds", [0, 0.05], ids=["gap-fill-on-reconnect", "with-fallback-polling"])
def test_a_dropped_stream_is_gap_filled_from_rest_and_no_fill_is_lost_or_doubled(make_order, poll_seconds):
    async def scenario():
        async with running_venue() as venue:
            provider, credentials, streamed = await streaming_provider(venue, poll_seconds=poll_seconds,
                                                                       reconnect_seconds=0.05)
            stream = provider.sessions[credentials.account_key].streams[MarketType.FUTURES]
            assert await stream.wait_connected(5)
            await ready(provider)
            first = limit(make_order, "64000", "0.3")
            second = limit(make_order, "63900", "0.2")
            third = limit(make_order, "63800", "0.4")
            answers = []
            for order in (first, second, third):
                answers += await provider.execute(order)

            def fills_of(order):
                return [r for r in streamed + answers if r.fill and r.order_id == order.order_id]

            # Connected: the stream brings the fill; REST is not asked.
            reads_before = len(venue.requests("GET", "/userTrades"))
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("63990"))
            await until(lambda: fills_of(first))
            await asyncio.sleep(0.2)  # several poll intervals: a live stream means no polling
            reads_connected = len(venue.requests("GET", "/userTrades")) - reads_before

            # Dropped, and reconnects refused for a while: two fills happen unseen.
            venue.sim.streams.refuse_until = time.monotonic() + 0.4
            await venue.sim.streams.drop_all()
            await until(lambda: not stream.connected)
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("63890"))
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("63790"))
            await until(lambda: fills_of(second) and fills_of(third) and stream.connected, timeout=10)
            await asyncio.sleep(0.3)  # anything doubled would have arrived by now
            venue_trades = [VenueRecord.trade_id(t) for t in venue.sim.state.accounts[WALLET_A[0]].trades]
            all_fills = [r.fill.trade_id for r in streamed + answers if r.fill]
            sources = [json.loads(fills_of(order)[0].raw_json) for order in (first, second, third)]
            connections = stream.connections
            await provider.close()
            return venue_trades, all_fills, reads_connected, connections, sources, streamed

    venue_trades, all_fills, reads_connected, connections, sources, streamed = run(scenario)

    assert len(venue_trades) == 3
    assert sorted(all_fills) == sorted(venue_trades)  # none lost, none twice
    assert reads_connected == 0
    assert connections >= 2
    # The first fill came on the stream; the two made while it was down, from REST on reconnect.
    assert sources[0]["event"]["e"] == "ORDER_TRADE_UPDATE"
    assert "userTrade" in sources[1] and "userTrade" in sources[2]
    assert all(r.order_status is OrderStatus.FILLED for r in streamed if r.fill)


def test_a_refused_cancel_of_an_order_filled_meanwhile_answers_with_its_fill(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0)
            await ready(provider)
            order = limit(make_order, "64000", "0.3")
            await provider.execute(order)
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("63990"))  # fills, unseen
            answer = await provider.cancel(order.order_id)  # the venue: -2011 CANCEL_REJECTED
            await provider.close()
            return answer

    answer = run(scenario)

    assert answer.order_status is OrderStatus.FILLED and answer.fill is not None
    assert answer.fill.quantity == Decimal("0.3")


def test_hedge_mode_sends_position_sides_and_the_venue_checks_what_a_close_may_reduce(make_order):
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A)
            provider = LiveProvider(venue.transport(credentials=wallet()), poll_seconds=0)
            await ready(provider)
            await provider.set_position_mode(True)
            opened = await provider.execute(make_order(quantity=Decimal("0.3")))
            with pytest.raises(VenueRejected) as too_much:
                await provider.execute(make_order(side=Side.SELL, reduce_only=True, quantity=Decimal("0.5")))
            closed = await provider.execute(make_order(side=Side.SELL, reduce_only=True, quantity=Decimal("0.3")))
            provider.sessions[provider.session().key].hedge_mode = False  # out of step with the venue
            with pytest.raises(VenueRejected) as mismatch:
                await provider.execute(make_order(quantity=Decimal("0.1")))
            account = venue.sim.state.accounts[WALLET_A[0]]
            sides = [(o.side, o.position_side) for o in account.orders.values()]
            await provider.close()
            return opened, too_much.value, closed, mismatch.value, sides, account.positions

    opened, too_much, closed, mismatch, sides, positions = run(scenario)

    assert opened[-1].order_status is OrderStatus.FILLED and closed[-1].order_status is OrderStatus.FILLED
    assert too_much.reason == "REDUCE_ONLY_REJECTED" and too_much.venue_code == -2022
    assert mismatch.reason == "POSITION_SIDE_MISMATCH" and mismatch.venue_code == -4061
    assert sides == [("BUY", "LONG"), ("SELL", "LONG")]
    assert positions[("BTCUSDT", "LONG")].amount == 0


def test_settings_read_from_the_venue_after_a_restart_let_orders_through(make_order):
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A)
            before = LiveProvider(venue.transport(credentials=wallet()), poll_seconds=0)
            await before.set_leverage("BTCUSDT", 7)
            await before.set_margin_mode("BTCUSDT", MarginMode.ISOLATED)
            await before.close()
            after = LiveProvider(venue.transport(credentials=wallet()), poll_seconds=0)
            settings = await after.load_settings(["BTCUSDT"])
            reports = await after.execute(make_order(quantity=Decimal("0.1"), leverage=Decimal(7)))
            await after.close()
            return settings, reports

    settings, reports = run(scenario)

    assert settings.leverage == {"BTCUSDT": 7} and settings.margin_modes == {"BTCUSDT": MarginMode.ISOLATED}
    assert settings.hedge_mode is False
    assert reports[-1].order_status is OrderStatus.FILLED


def test_the_kill_switch_cancels_an_order_placed_outside_tessera_and_the_dead_man_switch_fires(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0)
            await ready(provider)
            default = venue.sim.state.account("default")
            outside = venue.sim.state.place(default, "futures", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                                 "timeInForce": "GTC", "quantity": "0.1",
                                                                 "price": "60000"})
            listed = await provider.open_orders("BTCUSDT")
            await provider.cancel_all_open_orders("BTCUSDT")
            after_kill = outside.status
            resting = venue.sim.state.place(default, "futures", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                                 "timeInForce": "GTC", "quantity": "0.1",
                                                                 "price": "60000"})
            armed = await provider.countdown_cancel_all("BTCUSDT", 100)
            await until(lambda: resting.status == "CANCELED", timeout=3)
            await provider.close()
            return listed, after_kill, armed

    listed, after_kill, armed = run(scenario)

    assert [o["clientOrderId"] for o in listed] and after_kill == "CANCELED"
    assert armed == 100


def test_the_accounts_order_limit_from_exchange_info_is_kept_before_the_venue_must_refuse(make_order):
    async def scenario():
        async with running_venue(sim_options={"order_limit": 2}) as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0)
            await ready(provider)
            await provider.execute(make_order(quantity=Decimal("0.1")))
            await provider.execute(make_order(quantity=Decimal("0.1")))
            with pytest.raises(VenueRateLimited) as refused:
                await provider.execute(make_order(quantity=Decimal("0.1")))
            sent = len(venue.requests("POST", "/order"))
            await provider.close()
            return refused.value, sent

    refused, sent = run(scenario)

    assert refused.reason == "VENUE_ORDER_RATE_LIMITED"
    assert sent == 2


def test_percent_price_and_the_mark_price_notional_are_checked_before_sending(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0)
            await ready(provider)
            from services.domain.errors import PreconditionFailed

            with pytest.raises(PreconditionFailed) as band:
                await provider.execute(limit(make_order, "80000", "0.1"))  # > 1.15 × mark
            with pytest.raises(PreconditionFailed) as notional:
                await provider.execute(make_order(quantity=Decimal("0.00007")))
            sent = len(venue.requests("POST", "/order"))
            await provider.close()
            return band.value, notional.value, sent

    band, notional, sent = run(scenario)

    assert band.reason == "PRICE_OUTSIDE_PERCENT_BAND"
    assert notional.reason == "ORDER_NOT_REPRESENTABLE"
    assert sent == 0


def test_a_maker_rebate_keeps_its_sign(make_order):
    async def scenario():
        async with running_venue(maker_fee=Decimal("-0.0001")) as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0)
            await ready(provider)
            order = limit(make_order, "64000", "0.3")
            await provider.execute(order)
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("63990"))
            fills = await provider.poll_once()
            await provider.close()
            return fills

    fills = run(scenario)

    assert fills[0].fill.commission == Decimal("-1.92")  # 64000 × 0.3 × -0.0001


def test_the_venue_refuses_the_undocumented_order_id_on_futures_user_trades():
    async def scenario():
        async with running_venue() as venue:
            transport = venue.transport()
            from services.exchange.aster.requests import VenueRequest

            request = VenueRequest("GET", "/fapi/v1/userTrades", (("symbol", "BTCUSDT"), ("orderId", "1")), True)
            with pytest.raises(VenueRejected) as refused:
                await transport.send(request)
            await transport.close()
            return refused.value

    assert run(scenario).venue_code == -1103


assert API_KEY and API_SECRET  # the default account's V1 key serves the single-account tests


def test_spot_fills_arrive_on_the_spot_user_stream(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider, credentials, streamed = await streaming_provider(venue)
            order = limit(make_order, "3190", "1", symbol="ETHUSDT", market_type=MarketType.SPOT)
            placed = await provider.execute(order)
            stream = provider.sessions[credentials.account_key].streams[MarketType.SPOT]
            assert await stream.wait_connected(5)
            venue.sim.state.set_price("spot", "ETHUSDT", Decimal("3185"))
            await until(lambda: any(r.fill for r in streamed))
            paths = {r["path"] for r in venue.sim.requests}
            await provider.close()
            return placed, streamed, paths

    placed, streamed, paths = run(scenario)

    assert placed[0].order_status is OrderStatus.ACCEPTED
    fill = next(r for r in streamed if r.fill)
    assert fill.fill.trade_id.startswith("spot:") and fill.order_status is OrderStatus.FILLED
    assert json.loads(fill.raw_json)["event"]["e"] == "executionReport"
    assert {"/api/v3/order", "/api/v3/listenKey"} <= paths


def test_cancel_all_reports_carry_the_cancel_request_and_the_orders_answer(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0)
            await ready(provider)
            await provider.execute(limit(make_order, "60000", "0.1"))
            reports = await provider.cancel_all("BTCUSDT")
            await provider.close()
            return reports

    (report,) = run(scenario)

    record = json.loads(report.raw_json)
    assert record["cancelAll"]["request"] == {"method": "DELETE", "path": "/fapi/v1/allOpenOrders",
                                              "params": {"symbol": "BTCUSDT"}}
    assert record["order"]["response"]["status"] == "CANCELED"


def test_with_rounding_off_a_price_off_the_tick_is_refused_so_the_stored_price_is_the_sent_one(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0, round_prices=False)
            await ready(provider)
            from services.domain.errors import PreconditionFailed

            with pytest.raises(PreconditionFailed) as refused:
                await provider.execute(limit(make_order, "60000.05", "0.1"))  # tick 0.1
            on_tick = await provider.execute(limit(make_order, "60000.1", "0.1"))
            await provider.close()
            return refused.value, json.loads(on_tick[0].raw_json)["request"]["params"]["price"]

    refused, sent = run(scenario)

    assert refused.reason == "PRICE_NOT_ON_TICK"
    assert sent == "60000.1"
