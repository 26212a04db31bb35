"""The live provider with a venue accounts registry, against the simulator: accounts side by
side with their own credentials, an account the registry lacks refused with nothing sent, the
settings read from the venue when the provider starts (a restart refuses nothing), and the
cancel-all of the kill switch reaching orders placed at the venue outside Tessera."""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal

import pytest

from services.common.venue_accounts import VenueAccounts
from services.domain import MarginMode, MarketType, OrderStatus, OrderType, Side
from services.domain.errors import CancelAllIncomplete, PreconditionFailed
from services.exchange.aster.credentials import credentials_from_mapping
from services.exchange.providers.live import LiveProvider

from venue_sim_support import WALLET_A, running_venue

V1_KEY, V1_SECRET = "key-desk-b-0123", "secret-desk-b-0123456789"


def registry(tmp_path) -> VenueAccounts:
    (tmp_path / "a.key").write_text(WALLET_A[2] + "\n")
    (tmp_path / "b.key").write_text(V1_KEY)
    (tmp_path / "b.secret").write_text(V1_SECRET)
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps({"accounts": {
        "desk-a": {"venue": "aster", "market_types": ["FUTURES"], "user": WALLET_A[0], "signer": WALLET_A[1],
                   "private_key_file": "a.key"},
        "desk-b": {"venue": "aster", "market_types": ["FUTURES"], "api_key_file": "b.key",
                   "secret_file": "b.secret"},
    }}))
    return VenueAccounts(path, credentials=credentials_from_mapping)


async def sink(reports):
    return None


@contextlib.asynccontextmanager
async def started(tmp_path, **options):
    """The simulator with desk-a's API wallet and desk-b's key, and a provider of the
    registry started against it (closed after). Yields the venue and the provider."""
    async with running_venue() as venue:
        venue.register(WALLET_A)
        venue.sim.add_api_key(V1_KEY, V1_SECRET, account="venue-b")
        provider = LiveProvider(venue.transport(credentials=None), poll_seconds=0, user_stream=False,
                                accounts=registry(tmp_path), **options)
        await provider.start(sink)
        try:
            yield venue, provider
        finally:
            await provider.close()


def venue_statuses(venue) -> dict[str, str]:
    return {o.client_order_id: o.status for o in venue.sim.state.orders.values()}


def test_two_accounts_trade_side_by_side_and_an_unconfigured_one_is_refused_with_nothing_sent(tmp_path, make_order):
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A)
            venue.sim.add_api_key(V1_KEY, V1_SECRET, account="venue-b")
            provider = LiveProvider(venue.transport(credentials=None), poll_seconds=0, user_stream=False,
                                    accounts=registry(tmp_path))
            await provider.start(sink)  # reads each account's settings from the venue
            a = await provider.execute(make_order(account="desk-a", quantity=Decimal("0.1")))
            b = await provider.execute(make_order(account="desk-b", quantity=Decimal("0.2")))
            sent_before = len(venue.requests("POST", "/order"))
            refusals = []
            for order in (make_order(account="someone-else"), make_order(account="desk-a", venue="binance"),
                          make_order(account="desk-a", market_type=MarketType.SPOT)):
                with pytest.raises(PreconditionFailed) as refused:
                    await provider.execute(order)
                refusals.append(refused.value.reason)
            sent_after = len(venue.requests("POST", "/order"))
            held = {name: [str(o.quantity) for o in account.orders.values()]
                    for name, account in venue.sim.state.accounts.items()}
            await provider.close()
            return a, b, refusals, sent_before, sent_after, held

    a, b, refusals, sent_before, sent_after, held = asyncio.run(scenario())

    assert a[-1].order_status is OrderStatus.FILLED and b[-1].order_status is OrderStatus.FILLED
    assert held[WALLET_A[0]] == ["0.1"] and held["venue-b"] == ["0.2"]
    assert refusals == ["ACCOUNT_NOT_CONFIGURED", "VENUE_NOT_CONFIGURED", "VENUE_NOT_CONFIGURED"]
    assert sent_after == sent_before == 2


def test_a_restarted_provider_reads_the_settings_from_the_venue_and_refuses_no_order_for_them(tmp_path, make_order):
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A)
            venue.sim.add_api_key(V1_KEY, V1_SECRET, account="venue-b")
            first = LiveProvider(venue.transport(credentials=None), poll_seconds=0, user_stream=False,
                                 accounts=registry(tmp_path))
            await first.set_leverage("BTCUSDT", 5, account="desk-a")
            await first.set_margin_mode("BTCUSDT", MarginMode.ISOLATED, account="desk-a")
            await first.set_position_mode(True, account="desk-b")
            await first.close()
            restarted = LiveProvider(venue.transport(credentials=None), poll_seconds=0, user_stream=False,
                                     accounts=registry(tmp_path))
            await restarted.start(sink)
            settings = restarted.venue_settings()
            filled = await restarted.execute(make_order(account="desk-a", leverage=Decimal(5),
                                                        quantity=Decimal("0.1")))
            hedged = await restarted.execute(make_order(account="desk-b", quantity=Decimal("0.1")))
            with pytest.raises(PreconditionFailed) as mismatch:
                await restarted.execute(make_order(account="desk-a", leverage=Decimal(3)))
            sides = {name: sorted(key[1] for key, position in account.positions.items() if position.amount)
                     for name, account in venue.sim.state.accounts.items() if name in (WALLET_A[0], "venue-b")}
            await restarted.close()
            return settings, filled, hedged, mismatch.value, sides

    settings, filled, hedged, mismatch, sides = asyncio.run(scenario())

    assert settings["desk-a"].leverage["BTCUSDT"] == 5
    assert settings["desk-a"].margin_modes["BTCUSDT"] is MarginMode.ISOLATED
    assert settings["desk-a"].hedge_mode is False and settings["desk-b"].hedge_mode is True
    assert filled[-1].order_status is OrderStatus.FILLED and hedged[-1].order_status is OrderStatus.FILLED
    assert sides == {WALLET_A[0]: ["BOTH"], "venue-b": ["LONG"]}  # positionSide sent in hedge mode only
    assert mismatch.reason == "LEVERAGE_MISMATCH"


def test_cancel_all_cancels_every_configured_accounts_open_orders_at_the_venue_whoever_placed_them(tmp_path,
                                                                                                  make_order):
    async def scenario():
        async with started(tmp_path) as (venue, provider):
            ours = await provider.execute(make_order(account="desk-a", order_type=OrderType.LIMIT,
                                                     price=Decimal("60000"), quantity=Decimal("0.1")))
            async with venue.sim._lock:  # placed at the venue with desk-b's key, not through Tessera
                outside = venue.sim.state.place(venue.sim.state.account("venue-b"), "futures", {
                    "symbol": "ETHUSDT", "side": "SELL", "type": "LIMIT", "quantity": "1", "price": "4000",
                    "timeInForce": "GTC", "newClientOrderId": "placed-by-hand"})
            reports = await provider.cancel_all()
            return ours[0], outside, reports, venue_statuses(venue)

    ours, outside, reports, statuses = asyncio.run(scenario())

    assert statuses[ours.client_order_id] == "CANCELED"
    assert statuses["placed-by-hand"] == "CANCELED"
    assert [(r.order_id, r.order_status) for r in reports] == [(ours.order_id, OrderStatus.CANCELLED)]
    assert json.loads(reports[0].raw_json)["cancelAll"]["response"]["code"] == 200  # the allOpenOrders exchange


@contextlib.asynccontextmanager
async def two_desks_resting(tmp_path, make_order):
    """desk-a and desk-b started against the simulator, with resting orders: desk-a one on
    BTCUSDT, desk-b one on BTCUSDT and one on ETHUSDT. Yields the venue, the provider and
    the orders as placed (desk-a's, then desk-b's two)."""
    async with started(tmp_path) as (venue, provider):
        placed = [(await provider.execute(make_order(account=account, symbol=symbol, price=price,
                                                     order_type=OrderType.LIMIT, quantity=Decimal("0.1"))))[0]
                  for account, symbol, price in (("desk-a", "BTCUSDT", Decimal("60000")),
                                                 ("desk-b", "BTCUSDT", Decimal("60000")),
                                                 ("desk-b", "ETHUSDT", Decimal("3000")))]
        yield venue, provider, placed


def test_cancel_all_goes_on_past_an_account_whose_signer_the_venue_refuses_and_names_what_failed(tmp_path,
                                                                                               make_order):
    async def scenario():
        async with two_desks_resting(tmp_path, make_order) as (venue, provider, placed):
            venue.sim.auth.revoke_wallet(*WALLET_A[:2])  # desk-a sorts first, by name and by venue account
            with pytest.raises(CancelAllIncomplete) as incomplete:
                await provider.cancel_all()
            return placed[0], placed[1:], incomplete.value, venue_statuses(venue)

    a, b, incomplete, statuses = asyncio.run(scenario())

    assert statuses[a.client_order_id] == "NEW"  # refused: nothing cancelled for desk-a
    assert [statuses[placed.client_order_id] for placed in b] == ["CANCELED", "CANCELED"]
    assert sorted((r.order_id, r.order_status) for r in incomplete.reports) == sorted(
        (placed.order_id, OrderStatus.CANCELLED) for placed in b)
    # desk-a's open orders could not be listed, nor its followed order's symbol cancelled
    assert [(f.account, f.market_type, f.symbol, f.reason) for f in incomplete.failures] == [
        ("desk-a", MarketType.FUTURES, "", "VENUE_UNAUTHORIZED"),
        ("desk-a", MarketType.FUTURES, "BTCUSDT", "VENUE_UNAUTHORIZED")]
    assert incomplete.reason == "CANCEL_ALL_INCOMPLETE" and "desk-a FUTURES (every symbol)" in str(incomplete)


def test_cancel_all_goes_on_past_a_symbol_the_venue_fails_to_cancel(tmp_path, make_order):
    async def scenario():
        async with two_desks_resting(tmp_path, make_order) as (venue, provider, placed):
            venue.fault("error_5xx", method="DELETE", path="/allOpenOrders", count=1)  # the first symbol's
            with pytest.raises(CancelAllIncomplete) as incomplete:
                await provider.cancel_all(account="desk-b")
            return placed[1:], incomplete.value, venue_statuses(venue)

    placed, incomplete, statuses = asyncio.run(scenario())

    assert [statuses[p.client_order_id] for p in placed] == ["NEW", "CANCELED"]
    assert [(f.account, f.symbol) for f in incomplete.failures] == [("desk-b", "BTCUSDT")]
    assert [(r.order_id, r.order_status) for r in incomplete.reports] == [(placed[1].order_id, OrderStatus.CANCELLED)]


def test_the_dead_man_switch_is_held_while_the_oms_is_alive_and_the_venue_cancels_when_it_is_gone(tmp_path,
                                                                                                 make_order):
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A)
            venue.sim.add_api_key(V1_KEY, V1_SECRET, account="venue-b")
            provider = LiveProvider(venue.transport(credentials=None), poll_seconds=0, user_stream=False,
                                    accounts=registry(tmp_path), deadman_seconds=0.5)
            oms_alive = [True]
            provider.alive = lambda: oms_alive[0]
            await provider.start(sink)
            resting = await provider.execute(make_order(account="desk-a", order_type=OrderType.LIMIT,
                                                        price=Decimal("60000"), quantity=Decimal("0.1")))
            client_id = resting[0].client_order_id

            def status():
                return next(o.status for o in venue.sim.state.orders.values() if o.client_order_id == client_id)

            await asyncio.sleep(1.2)  # beats every 0.125 s: the countdown never runs out
            held = status()
            oms_alive[0] = False  # the OMS stops following the reports
            await asyncio.sleep(1.2)
            after = status()
            beats = len(venue.requests("POST", "/countdownCancelAll"))
            await provider.close()
            return held, after, beats

    held, after, beats = asyncio.run(scenario())

    assert held == "NEW"
    assert after == "CANCELED"  # cancelled by the venue, nobody asked it to
    assert beats >= 4


def test_without_rounding_an_off_tick_stop_price_is_refused_too_and_nothing_is_sent(tmp_path, make_order):
    async def scenario():
        async with started(tmp_path, round_prices=False) as (venue, provider):
            with pytest.raises(PreconditionFailed) as refused:
                await provider.execute(make_order(account="desk-a", order_type=OrderType.STOP_LIMIT,
                                                  price=Decimal("70000.1"), stop_price=Decimal("69999.95"),
                                                  quantity=Decimal("0.1")))
            return refused.value, venue.requests("POST", "/order")

    refused, sent = asyncio.run(scenario())

    assert refused.reason == "PRICE_NOT_ON_TICK" and "stop price 69999.95" in str(refused)
    assert sent == []


def test_without_a_registry_only_the_environments_account_trades_and_only_at_aster_and_risk_refuses_the_same(
        make_order):
    environment = {"TESSERA_EXECUTION_MODE": "live", "ASTER_ACCOUNT_ID": "acct-1"}
    # What Risk reads from the same environment (it refuses before anything is stored).
    risk_registry = VenueAccounts.from_environ(environment, single_account=True)
    refused_orders = (make_order(account="someone-else"), make_order(venue="binance"))

    async def scenario():
        async with running_venue() as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0, user_stream=False,
                                    account_id=environment["ASTER_ACCOUNT_ID"])
            await provider.set_leverage("BTCUSDT", 10)
            await provider.set_margin_mode("BTCUSDT", MarginMode.ISOLATED)
            refusals = []
            for order in refused_orders:
                with pytest.raises(PreconditionFailed) as refused:
                    await provider.execute(order)
                refusals.append(refused.value.reason)
            sent = len(venue.requests("POST", "/order"))
            filled = await provider.execute(make_order(account="acct-1"))
            await provider.close()
            return refusals, sent, filled

    refusals, sent, filled = asyncio.run(scenario())

    assert refusals == ["ACCOUNT_NOT_CONFIGURED", "VENUE_NOT_CONFIGURED"]
    assert sent == 0
    assert filled[-1].order_status is OrderStatus.FILLED
    assert risk_registry is not None
    risk_refusals = []
    for order in refused_orders:
        with pytest.raises(PreconditionFailed) as refused:
            risk_registry.check(order.account, order.venue, order.market_type)
        risk_refusals.append(refused.value.reason)
    assert risk_refusals == refusals
    for market in (MarketType.FUTURES, MarketType.SPOT):  # what the Exchange takes, Risk takes
        assert risk_registry.check("acct-1", "aster", market).account == "acct-1"


def test_without_a_registry_a_setting_or_a_read_for_another_account_is_refused_and_nothing_is_sent():
    # The environment's credentials trade for acct-1 alone: a setting named for another
    # account must not change acct-1's at the venue (nor read acct-1's as the other's).
    async def scenario():
        async with running_venue() as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0, user_stream=False, account_id="acct-1")
            refusals = []
            for call in (lambda: provider.set_leverage("BTCUSDT", 50, account="someone-else"),
                         lambda: provider.set_margin_mode("BTCUSDT", MarginMode.CROSSED, account="someone-else"),
                         lambda: provider.set_position_mode(True, account="someone-else"),
                         lambda: provider.venue_positions(account="someone-else")):
                with pytest.raises(PreconditionFailed) as refused:
                    await call()
                refusals.append(refused.value.reason)
            sent = [r["path"] for r in venue.requests() if "/time" not in r["path"]]
            applied = await provider.set_leverage("BTCUSDT", 10, account="acct-1")  # its own account: taken
            await provider.close()
            return refusals, sent, applied, provider.session("acct-1").leverage

    refusals, sent, applied, leverage = asyncio.run(scenario())

    assert refusals == ["ACCOUNT_NOT_CONFIGURED"] * 4
    assert sent == []
    assert applied == 10 and leverage == {"BTCUSDT": 10}
