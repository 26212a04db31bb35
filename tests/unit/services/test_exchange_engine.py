"""The Exchange service's gate: the token is verified again, each order executes once (and none while the
store refuses it for a halt), reports are logged, the venue-wide cancel waits for the placements in progress."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from decimal import Decimal

import pytest
from fakes import HeldPaperVenue, first_of, sweep_waiting

import core_ext
from services.common import convert
from services.common.tokens import OMS_CREDENTIAL_METADATA, ReplayCache, oms_call_metadata, verify_oms_call
from services.domain import OrderStatus, OrderType, Side, utcnow
from services.domain.errors import PreconditionFailed, TokenRejected, TokenReplayed
from services.domain.execution import ExecutionReport
from services.exchange.engine import ExchangeEngine
from services.exchange.providers.paper import PaperProvider
from services.exchange.reports import ReportLog
from services.exchange.venue import OrderRef
from tessera.exchange.v1 import exchange_pb2

TTL = 300


class SpyProvider:
    """A paper venue that records every call made to it."""

    mode = "PAPER"

    def __init__(self) -> None:
        self.venue = PaperProvider({"BTCUSDT": Decimal("50000")})
        self.executed: list[str] = []
        self.cancelled: list[str] = []

    async def start(self, sink):
        await self.venue.start(sink)

    async def close(self):
        await self.venue.close()

    async def price(self, symbol, market_type=None):
        return await self.venue.price(symbol)

    async def execute(self, order):
        self.executed.append(order.order_id)
        return await self.venue.execute(order)

    async def cancel(self, order_id, **target):
        self.cancelled.append(order_id)
        return await self.venue.cancel(order_id, **target)

    async def cancel_all(self, symbol=None, market_type=None):
        return await self.venue.cancel_all(symbol, market_type)


@pytest.fixture
def spy() -> SpyProvider:
    return SpyProvider()


@pytest.fixture
def engine(keyring, spy) -> ExchangeEngine:
    # Started at the beginning of this second, as the service serves once it accepts a credential signed now.
    return ExchangeEngine(keyring, spy, ttl_seconds=TTL, credentials_since=int(time.time()))


def execute_request(order, token) -> exchange_pb2.ExecuteOrderRequest:
    """The ExecuteOrderRequest the OMS sends for ``order`` and ``token``."""
    return exchange_pb2.ExecuteOrderRequest(order=convert.order_to_proto(order), risk_token=token or "")


def from_oms(keyring, order, token, method: str = "ExecuteOrder"):
    """The call metadata the OMS attaches to an ExecuteOrder call of ``order`` and ``token``."""
    return oms_call_metadata(keyring, method, execute_request(order, token))


async def execute_as_oms(engine: ExchangeEngine, keyring, order, token):
    """``engine.execute`` as the OMS calls it: with its signed call credential."""
    return await engine.execute(order, token, from_oms(keyring, order, token), execute_request(order, token))


def tamper_signature(token: str) -> str:
    """Change the signature's first character (keeps the token well formed)."""
    head, signature = token.rsplit(".", 1)
    first = "B" if signature[0] != "B" else "C"
    return f"{head}.{first}{signature[1:]}"


def test_valid_token_executes_and_the_reports_travel_in_the_answer_alone(engine, spy, keyring, make_order, sign):
    first, second = make_order(order_type=OrderType.MARKET, price=None), make_order(price=Decimal("40000"))

    async def scenario():
        one = await execute_as_oms(engine, keyring, first, sign(first))
        two = await execute_as_oms(engine, keyring, second, sign(second))
        return one, two

    one, two = asyncio.run(scenario())

    assert [r.order_status for r in one] == [OrderStatus.FILLED]
    assert [r.order_status for r in two] == [OrderStatus.ACCEPTED]
    assert spy.executed == [first.order_id, second.order_id]
    assert engine.reports.after(0) == []  # each report reaches the OMS once: in the answer


def test_reports_of_an_unanswered_call_go_to_the_log_with_increasing_sequences(engine, keyring, make_order, sign):
    first, second = make_order(order_type=OrderType.MARKET, price=None), make_order(price=Decimal("40000"))

    async def scenario():
        one = await execute_as_oms(engine, keyring, first, sign(first))
        two = await execute_as_oms(engine, keyring, second, sign(second))
        await engine.unanswered(one)
        await engine.unanswered(two)
        return one, two

    one, two = asyncio.run(scenario())

    assert [r.sequence for r in engine.reports.after(0)] == [1, 2]
    assert engine.reports.after(0) == [*one, *two]
    assert engine.reports.last_sequence == 2


def test_cancel_through_the_engine_answers_the_cancel_report(engine, spy, keyring, make_order, sign):
    order = make_order(price=Decimal("40000"))

    async def scenario():
        await execute_as_oms(engine, keyring, order, sign(order))
        return await engine.cancel(order.order_id)

    report = asyncio.run(scenario())

    assert report.order_status is OrderStatus.CANCELLED
    assert spy.cancelled == [order.order_id]
    assert engine.reports.after(0) == []


def test_cancel_all_puts_its_reports_on_the_log(engine, keyring, make_order, sign):
    order = make_order(price=Decimal("40000"))

    async def scenario():
        await execute_as_oms(engine, keyring, order, sign(order))
        return await engine.cancel_all(order.symbol)

    reports = asyncio.run(scenario())

    assert [r.order_status for r in reports] == [OrderStatus.CANCELLED]
    assert engine.reports.after(0) == reports  # no OMS call asked for these: the OMS learns them from the log


def bad_tokens():
    """(id, build(order, sign, keyring) -> (order to execute, token), expected reason)."""
    now = int(time.time())
    other_keyring = core_ext.KeyRing("other-key", b"another-secret-of-32-bytes-or-more!")
    same_id_other_secret = core_ext.KeyRing("unit1", b"a-different-secret-under-the-same-id")
    return [
        ("missing-empty", lambda o, sign: (o, ""), core_ext.TOKEN_MISSING),
        ("missing-none", lambda o, sign: (o, None), core_ext.TOKEN_MISSING),
        ("malformed", lambda o, sign: (o, "not-a-token"), core_ext.TOKEN_MALFORMED),
        ("malformed-truncated", lambda o, sign: (o, sign(o)[:-5]), core_ext.TOKEN_MALFORMED),
        ("tampered-signature", lambda o, sign: (o, tamper_signature(sign(o))), core_ext.TOKEN_BAD_SIGNATURE),
        (
            "forged-with-another-secret",
            lambda o, sign: (o, sign(o, with_keyring=same_id_other_secret)),
            core_ext.TOKEN_BAD_SIGNATURE,
        ),
        ("unknown-key", lambda o, sign: (o, sign(o, with_keyring=other_keyring)), core_ext.TOKEN_UNKNOWN_KEY),
        ("expired", lambda o, sign: (o, sign(o, issued_at=now - TTL - 60)), core_ext.TOKEN_EXPIRED),
        ("future", lambda o, sign: (o, sign(o, issued_at=now + 3600)), core_ext.TOKEN_NOT_YET_VALID),
        (
            "fields-changed-quantity",
            lambda o, sign: (dataclasses.replace(o, quantity=o.quantity * 10), sign(o)),
            core_ext.TOKEN_FIELDS_CHANGED,
        ),
        (
            "fields-changed-side",
            lambda o, sign: (dataclasses.replace(o, side=Side.SELL), sign(o)),
            core_ext.TOKEN_FIELDS_CHANGED,
        ),
    ]


BAD_TOKENS = bad_tokens()


@pytest.mark.parametrize(("case", "build", "reason"), BAD_TOKENS, ids=[case for case, _, _ in BAD_TOKENS])
def test_bad_token_is_rejected_with_its_reason_and_never_reaches_the_provider(
    engine, spy, keyring, make_order, sign, case, build, reason
):
    order, token = build(make_order(), sign)

    with pytest.raises(TokenRejected) as raised:
        asyncio.run(execute_as_oms(engine, keyring, order, token))

    assert raised.value.reason == reason
    assert spy.executed == []
    assert engine.reports.after(0) == []


def test_a_rejected_token_does_not_use_up_the_order(engine, spy, keyring, make_order, sign):
    order = make_order()

    async def scenario():
        with pytest.raises(TokenRejected):
            await execute_as_oms(engine, keyring, order, tamper_signature(sign(order)))
        return await execute_as_oms(engine, keyring, order, sign(order))

    reports = asyncio.run(scenario())

    assert len(reports) == 1
    assert spy.executed == [order.order_id]


@pytest.mark.parametrize("fresh_token", [False, True], ids=["same-token", "fresh-token"])
def test_second_execution_of_the_same_order_id_raises_token_replayed(
    engine, spy, keyring, make_order, sign, fresh_token
):
    order = make_order()
    token = sign(order)

    async def scenario():
        await execute_as_oms(engine, keyring, order, token)
        again = sign(order) if fresh_token else token  # a fresh token has a new nonce
        assert (again != token) is fresh_token
        await execute_as_oms(engine, keyring, dataclasses.replace(order), again)

    with pytest.raises(TokenReplayed) as raised:
        asyncio.run(scenario())

    assert raised.value.reason == "TOKEN_ALREADY_USED"
    assert spy.executed == [order.order_id]


# -- only the OMS may call -------------------------------------------------------------------------
def caller_cases():
    """(id, metadata builder (keyring, order, token) -> metadata, the refusal's reason)."""
    stranger = core_ext.KeyRing("stranger", b"a-key-the-exchange-does-not-know!!")
    not_oms, mismatch = "CALLER_NOT_OMS", "SERVICE_CREDENTIAL_MISMATCH"
    return [
        ("no-metadata", lambda keyring, order, token: (), not_oms),
        ("none", lambda keyring, order, token: None, not_oms),
        ("other-headers-only", lambda keyring, order, token: (("authorization", "Bearer x"),), not_oms),
        # Signed with the same key ring, over an order body: genuine, but not for this call.
        ("the-risk-token-itself", lambda keyring, order, token: ((OMS_CREDENTIAL_METADATA, token),), mismatch),
        ("signed-for-another-method",
         lambda keyring, order, token: from_oms(keyring, order, token, "CancelOrder"), mismatch),
        ("signed-for-another-risk-token", lambda keyring, order, token: from_oms(keyring, order, "x"), mismatch),
        ("signed-for-another-order",
         lambda keyring, order, token: from_oms(keyring, dataclasses.replace(order, order_id="other"), token),
         mismatch),
        ("signed-for-the-bare-method",
         lambda keyring, order, token: oms_call_metadata(keyring, "ExecuteOrder"), mismatch),
        ("signed-with-an-unknown-key", lambda keyring, order, token: from_oms(stranger, order, token), not_oms),
        ("expired", lambda keyring, order, token: oms_call_metadata(
            keyring, "ExecuteOrder", execute_request(order, token), now=time.time() - 36),
         "SERVICE_CREDENTIAL_EXPIRED"),
        ("issued-in-the-future", lambda keyring, order, token: oms_call_metadata(
            keyring, "ExecuteOrder", execute_request(order, token), now=time.time() + 60),
         "SERVICE_CREDENTIAL_EXPIRED"),
        ("garbage", lambda keyring, order, token: ((OMS_CREDENTIAL_METADATA, "garbage"),), not_oms),
    ]


CALLER_CASES = caller_cases()


@pytest.mark.parametrize(("case", "metadata", "reason"), CALLER_CASES, ids=[case for case, _, _ in CALLER_CASES])
def test_a_valid_risk_token_without_the_oms_credential_for_this_request_never_reaches_the_provider(
    engine, spy, keyring, make_order, sign, case, metadata, reason
):
    # Clients hold risk tokens; holding one must not let them past the OMS to a venue.
    order = make_order()
    token = sign(order)

    with pytest.raises(TokenRejected) as raised:
        asyncio.run(engine.execute(order, token, metadata(keyring, order, token)))

    assert raised.value.reason == reason
    assert spy.executed == []
    assert engine.reports.after(0) == []


def test_a_call_refused_for_its_caller_does_not_use_up_the_order(engine, spy, keyring, make_order, sign):
    order = make_order()
    token = sign(order)

    async def scenario():
        with pytest.raises(TokenRejected):
            await engine.execute(order, token, ())
        return await execute_as_oms(engine, keyring, order, token)

    assert len(asyncio.run(scenario())) == 1
    assert spy.executed == [order.order_id]


def test_a_bad_risk_token_is_reported_as_such_whoever_sends_it(engine, spy, make_order, sign):
    order = make_order()

    with pytest.raises(TokenRejected) as raised:
        asyncio.run(engine.execute(order, tamper_signature(sign(order)), ()))

    assert raised.value.reason == core_ext.TOKEN_BAD_SIGNATURE
    assert spy.executed == []


def test_authorize_accepts_the_oms_credential_for_its_method_only(engine, keyring):
    request = exchange_pb2.CancelOrderRequest(order_id="o-1", symbol="BTCUSDT")
    engine.authorize(oms_call_metadata(keyring, "CancelOrder", request), "CancelOrder", request)

    with pytest.raises(TokenRejected) as raised:
        engine.authorize(oms_call_metadata(keyring, "CancelOrder", request), "EmergencyCancelAll", request)

    assert raised.value.reason == "SERVICE_CREDENTIAL_MISMATCH"


def test_a_service_credential_used_a_second_time_within_its_lifetime_is_refused(engine, keyring):
    request = exchange_pb2.CancelOrderRequest(order_id="o-1", symbol="BTCUSDT")
    credential = oms_call_metadata(keyring, "CancelOrder", request)
    engine.authorize(credential, "CancelOrder", request)

    with pytest.raises(TokenRejected) as raised:
        engine.authorize(credential, "CancelOrder", request)

    assert raised.value.reason == "SERVICE_CREDENTIAL_REPLAYED"
    engine.authorize(oms_call_metadata(keyring, "CancelOrder", request), "CancelOrder", request)  # a fresh one


def test_a_cancel_credential_used_once_is_refused_by_the_restarted_exchange_and_a_fresh_one_accepted(keyring, spy):
    wall = [1_700_000_000.0]
    request = exchange_pb2.CancelOrderRequest(order_id="o-1", symbol="BTCUSDT")
    first = ExchangeEngine(keyring, spy, ttl_seconds=TTL, wall=lambda: wall[0])
    wall[0] += 0.5
    credential = oms_call_metadata(keyring, "CancelOrder", request, now=wall[0])
    first.authorize(credential, "CancelOrder", request)
    wall[0] += 2.0  # the Exchange restarts: a new engine, its replay cache empty
    restarted = ExchangeEngine(keyring, spy, ttl_seconds=TTL, wall=lambda: wall[0])

    with pytest.raises(TokenRejected) as raised:
        restarted.authorize(credential, "CancelOrder", request)  # within its lifetime, never seen by this engine

    assert raised.value.reason == "SERVICE_CREDENTIAL_BEFORE_START"
    assert raised.value.metadata == {"method": "CancelOrder"}
    wall[0] = math.ceil(restarted.credentials_since)  # the service serves from the next whole second
    restarted.authorize(oms_call_metadata(keyring, "CancelOrder", request, now=wall[0]), "CancelOrder", request)


def test_a_credential_of_the_second_the_exchange_started_in_is_refused_and_one_of_the_next_accepted(keyring, spy):
    engine = ExchangeEngine(keyring, spy, ttl_seconds=TTL, wall=lambda: 1_700_000_000.6)
    request = exchange_pb2.QueryOrderRequest(order_id="o-1", symbol="BTCUSDT")

    with pytest.raises(TokenRejected) as raised:  # issued at ...000 (whole seconds): before ...000.6
        engine.authorize(oms_call_metadata(keyring, "QueryOrder", request, now=1_700_000_000.6), "QueryOrder", request)

    assert raised.value.reason == "SERVICE_CREDENTIAL_BEFORE_START"
    engine.authorize(oms_call_metadata(keyring, "QueryOrder", request, now=1_700_000_001.0), "QueryOrder", request)


def test_the_service_waits_for_the_first_whole_second_after_its_engine_was_made(keyring, spy, monkeypatch):
    slept: list[float] = []

    async def sleep(seconds):
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    asyncio.run(ExchangeEngine(keyring, spy, wall=lambda: 1_700_000_000.75).accepting_credentials())
    asyncio.run(ExchangeEngine(keyring, spy, wall=lambda: 1_700_000_001.0).accepting_credentials())

    assert slept == [pytest.approx(0.25)]  # none at a whole second


def test_a_credential_for_one_request_is_refused_with_another_request_of_its_method(engine, keyring):
    asked = exchange_pb2.CancelOrderRequest(order_id="o-1", symbol="BTCUSDT")
    other = exchange_pb2.CancelOrderRequest(order_id="o-2", symbol="BTCUSDT")

    with pytest.raises(TokenRejected) as raised:
        engine.authorize(oms_call_metadata(keyring, "CancelOrder", asked), "CancelOrder", other)

    assert raised.value.reason == "SERVICE_CREDENTIAL_MISMATCH"
    engine.authorize(oms_call_metadata(keyring, "CancelOrder", asked), "CancelOrder", asked)


def test_the_replay_cache_forgets_a_credential_once_it_expired_and_refuses_past_its_capacity(keyring):
    cache = ReplayCache(capacity=2)
    request = b"\x0a\x03o-1"
    first = oms_call_metadata(keyring, "CancelOrder", request, now=1_000_000)
    verify_oms_call(keyring, first, "CancelOrder", request, replay=cache, now=1_000_001)
    verify_oms_call(keyring, oms_call_metadata(keyring, "CancelOrder", request, now=1_000_000), "CancelOrder",
                    request, replay=cache, now=1_000_001)
    with pytest.raises(TokenRejected) as full:
        verify_oms_call(keyring, oms_call_metadata(keyring, "CancelOrder", request, now=1_000_000), "CancelOrder",
                        request, replay=cache, now=1_000_002)
    # 35 s on (30 s lifetime, 5 s skew) both have expired: forgotten, and the first is refused as expired.
    with pytest.raises(TokenRejected) as late:
        verify_oms_call(keyring, first, "CancelOrder", request, replay=cache, now=1_000_035)
    verify_oms_call(keyring, oms_call_metadata(keyring, "CancelOrder", request, now=1_000_035), "CancelOrder",
                    request, replay=cache, now=1_000_035)

    assert full.value.reason == "SERVICE_CREDENTIAL_CACHE_FULL"
    assert late.value.reason == "SERVICE_CREDENTIAL_EXPIRED"
    assert len(cache) == 1


# -- the report log ----------------------------------------------------------------------------
def report(n: int) -> ExecutionReport:
    return ExecutionReport(
        order_id=f"order-{n}",
        client_order_id=f"cid-{n}",
        venue="paper",
        account="acct-1",
        symbol="BTCUSDT",
        side=Side.BUY,
        order_status=OrderStatus.ACCEPTED,
        transact_time=utcnow(),
    )


def test_report_log_numbers_reports_from_one():
    log = ReportLog()

    async def scenario():
        await log.append([report(1), report(2)])
        await log.append([report(3)])

    asyncio.run(scenario())

    assert [(r.order_id, r.sequence) for r in log.after(0)] == [("order-1", 1), ("order-2", 2), ("order-3", 3)]
    assert [r.sequence for r in log.after(2)] == [3]
    assert log.after(3) == []
    assert log.after(99) == []


def test_report_log_after_gives_only_what_is_still_retained():
    log = ReportLog(retain=3)

    asyncio.run(log.append([report(n) for n in range(1, 6)]))

    assert [r.sequence for r in log.after(0)] == [3, 4, 5]
    assert [r.sequence for r in log.after(3)] == [4, 5]


def test_follow_yields_the_retained_reports_then_new_ones_as_they_arrive():
    log = ReportLog()

    async def scenario():
        await log.append([report(1), report(2), report(3)])
        received: list[int] = []
        stream = log.follow(1)

        async def take(count: int) -> None:
            for _ in range(count):
                received.append((await asyncio.wait_for(stream.__anext__(), 2)).sequence)

        await take(2)  # retained: 2 and 3
        waiter = asyncio.create_task(take(2))
        await asyncio.sleep(0.01)
        assert not waiter.done()  # nothing new yet: it waits instead of ending
        await log.append([report(4)])
        await log.append([report(5)])
        await asyncio.wait_for(waiter, 2)
        await stream.aclose()
        return received

    assert asyncio.run(scenario()) == [2, 3, 4, 5]


def test_two_followers_each_see_every_new_report():
    log = ReportLog()

    async def scenario():
        async def follower() -> list[int]:
            seen = []
            async for item in log.follow(0):
                seen.append(item.sequence)
                if len(seen) == 3:
                    return seen
            return seen

        tasks = [asyncio.create_task(follower()) for _ in range(2)]
        await asyncio.sleep(0.01)
        for n in (1, 2, 3):
            await log.append([report(n)])
        return await asyncio.wait_for(asyncio.gather(*tasks), 2)

    assert asyncio.run(scenario()) == [[1, 2, 3], [1, 2, 3]]


class FailingOnce:
    """An execution record whose first write fails (the store went away), then records."""

    def __init__(self) -> None:
        self.calls = 0
        self.recorded: set[str] = set()

    async def record(self, orders, mode):
        self.calls += 1
        if self.calls == 1:
            raise OSError("the store is unavailable")
        fresh = [o.order_id not in self.recorded for o in orders]
        self.recorded |= {o.order_id for o in orders}
        return fresh


def test_an_execution_that_could_not_be_recorded_reaches_no_venue_and_can_be_sent_again(keyring, spy, make_order,
                                                                                         sign):
    engine = ExchangeEngine(keyring, spy, ttl_seconds=TTL, credentials_since=int(time.time()),
                            executions=FailingOnce())
    order = make_order()
    token = sign(order)

    async def scenario():
        with pytest.raises(OSError):
            await execute_as_oms(engine, keyring, order, token)
        assert spy.executed == []
        return await execute_as_oms(engine, keyring, order, token)  # the OMS's retry, a fresh credential

    reports = asyncio.run(scenario())

    assert len(reports) == 1
    assert spy.executed == [order.order_id]


def test_a_batch_whose_executions_could_not_be_recorded_reaches_no_venue_and_can_be_sent_again(keyring, spy,
                                                                                               make_order, sign):
    engine = ExchangeEngine(keyring, spy, ttl_seconds=TTL, credentials_since=int(time.time()),
                            executions=FailingOnce())
    orders = [make_order(), make_order()]
    items = [(order, None, sign(order)) for order in orders]
    request = exchange_pb2.ExecuteOrdersRequest(orders=[execute_request(o, t) for o, _, t in items])

    async def scenario():
        with pytest.raises(OSError):
            await engine.execute_many(items, oms_call_metadata(keyring, "ExecuteOrders", request), request)
        assert spy.executed == []
        return await engine.execute_many(items, oms_call_metadata(keyring, "ExecuteOrders", request), request)

    outcomes = asyncio.run(scenario())

    assert [len(o) for o in outcomes] == [1, 1]  # type: ignore[arg-type]
    assert spy.executed == [o.order_id for o in orders]


# -- trading halted: the record refuses, the venue-wide cancel waits for placements in progress ------
class HaltingRecord:
    """An execution record that refuses the orders of the ``halted`` symbols as the store
    does while trading is HALTED (not recorded), and records the others once each."""

    def __init__(self, *halted: str) -> None:
        self.halted = set(halted)
        self.recorded: set[str] = set()

    async def record(self, orders, mode):
        outcomes = []
        for order in orders:
            if order.symbol in self.halted:
                outcomes.append(PreconditionFailed(f"trading in {order.symbol} is halted: test",
                                                   reason="TRADING_HALTED", metadata={"symbol": order.symbol}))
            else:
                outcomes.append(order.order_id not in self.recorded)
                self.recorded.add(order.order_id)
        return outcomes


def test_an_execution_the_record_refuses_for_a_halt_reaches_no_venue_and_does_not_use_up_the_order(
        keyring, spy, make_order, sign):
    record = HaltingRecord("BTCUSDT")
    engine = ExchangeEngine(keyring, spy, ttl_seconds=TTL, credentials_since=int(time.time()), executions=record)
    order = make_order()
    token = sign(order)

    async def scenario():
        with pytest.raises(PreconditionFailed) as refused:
            await execute_as_oms(engine, keyring, order, token)
        assert spy.executed == []
        record.halted.clear()  # trading resumed: the order was neither recorded nor remembered as executed
        return refused.value, await execute_as_oms(engine, keyring, order, token)

    refused, reports = asyncio.run(scenario())

    assert refused.reason == "TRADING_HALTED" and refused.metadata == {"symbol": "BTCUSDT"}
    assert len(reports) == 1
    assert spy.executed == [order.order_id]


def test_a_batch_the_record_refuses_in_part_for_a_halted_symbol_executes_the_other_orders(
        keyring, spy, make_order, sign):
    engine = ExchangeEngine(keyring, spy, ttl_seconds=TTL, credentials_since=int(time.time()),
                            executions=HaltingRecord("ETHUSDT"))
    orders = [make_order(symbol="ETHUSDT", price=Decimal("3000")), make_order(price=Decimal("40000"))]
    items = [(order, None, sign(order)) for order in orders]
    request = exchange_pb2.ExecuteOrdersRequest(orders=[execute_request(o, t) for o, _, t in items])

    outcomes = asyncio.run(engine.execute_many(items, oms_call_metadata(keyring, "ExecuteOrders", request), request))

    assert isinstance(outcomes[0], PreconditionFailed) and outcomes[0].reason == "TRADING_HALTED"
    assert [r.order_status for r in outcomes[1]] == [OrderStatus.ACCEPTED]  # type: ignore[union-attr]
    assert spy.executed == [orders[1].order_id]


def held_engine(keyring, venue: HeldPaperVenue, placement_wait: float) -> ExchangeEngine:
    return ExchangeEngine(keyring, venue, ttl_seconds=TTL, credentials_since=int(time.time()),
                          placement_wait=placement_wait)


def test_the_venue_wide_cancel_waits_for_an_order_being_placed_and_cancels_it(keyring, make_order, sign):
    venue = HeldPaperVenue()
    engine = held_engine(keyring, venue, placement_wait=60)  # never reached: the placement is let in
    order = make_order(price=Decimal("40000"))  # rests: below the market

    async def scenario():
        waiting = sweep_waiting(engine)
        placing = asyncio.create_task(execute_as_oms(engine, keyring, order, sign(order)))
        await venue.placing.wait()  # recorded, at the venue's door
        sweep = asyncio.create_task(engine.emergency_cancel_all())
        await first_of(sweep, waiting)  # a sweep that does not wait for it has listed the venue's orders by now
        venue.release.set()
        placed = await placing
        reports, failures = await sweep
        return placed, reports, failures, await venue.query_order(OrderRef.of(order))

    placed, reports, failures, at_venue = asyncio.run(scenario())

    assert [r.order_status for r in placed] == [OrderStatus.ACCEPTED]
    assert [(r.order_id, r.order_status) for r in reports] == [(order.order_id, OrderStatus.CANCELLED)]
    assert failures == []
    assert at_venue.status is OrderStatus.CANCELLED  # nothing left working at the venue
    assert engine.reports.after(0) == reports  # the OMS learns the cancel from the log too


def test_the_venue_wide_cancel_waits_for_every_order_of_a_batch_being_placed(keyring, make_order, sign):
    """The orders of an ExecuteOrders batch go to the venue one after the other: one not
    handed to the venue yet is in progress all the same (recorded, on its way)."""
    venue = HeldPaperVenue()
    engine = held_engine(keyring, venue, placement_wait=60)  # never reached: the placements are let in
    orders = [make_order(price=Decimal("40000")), make_order(price=Decimal("41000"))]
    items = [(order, None, sign(order)) for order in orders]
    request = exchange_pb2.ExecuteOrdersRequest(orders=[execute_request(o, t) for o, _, t in items])

    async def scenario():
        waiting = sweep_waiting(engine)
        placing = asyncio.create_task(
            engine.execute_many(items, oms_call_metadata(keyring, "ExecuteOrders", request), request))
        await venue.placing.wait()  # the first at the venue's door, the second behind it
        assert len(engine.placements) == 2
        sweep = asyncio.create_task(engine.emergency_cancel_all())
        await first_of(sweep, waiting)
        venue.release.set()
        placed = await placing
        reports, failures = await sweep
        return placed, reports, failures

    placed, reports, failures = asyncio.run(scenario())

    assert [[r.order_status for r in outcome] for outcome in placed] == [[OrderStatus.ACCEPTED]] * 2
    assert sorted((r.order_id, r.order_status) for r in reports) == sorted(
        (order.order_id, OrderStatus.CANCELLED) for order in orders)
    assert failures == []
    assert len(engine.placements) == 0


def test_a_placement_still_in_progress_when_the_wait_ends_is_answered_as_a_failure_and_the_sweep_goes_on(
        keyring, make_order, sign):
    venue = HeldPaperVenue()
    engine = held_engine(keyring, venue, placement_wait=0)
    resting, placing_order = make_order(price=Decimal("40000")), make_order(price=Decimal("41000"))

    async def scenario():
        venue.release.set()
        await execute_as_oms(engine, keyring, resting, sign(resting))
        venue.release.clear()
        venue.placing.clear()
        placing = asyncio.create_task(execute_as_oms(engine, keyring, placing_order, sign(placing_order)))
        await venue.placing.wait()
        reports, failures = await engine.emergency_cancel_all()
        venue.release.set()
        await placing
        return reports, failures

    reports, failures = asyncio.run(scenario())

    assert [(r.order_id, r.order_status) for r in reports] == [(resting.order_id, OrderStatus.CANCELLED)]
    assert [(f.account, f.market_type, f.symbol, f.reason) for f in failures] == [
        (placing_order.account, placing_order.market_type, placing_order.symbol, "PLACEMENT_IN_PROGRESS")]
    assert placing_order.order_id in failures[0].message


def test_a_venue_wide_cancel_of_some_symbols_waits_for_no_placement_of_another(keyring, make_order, sign):
    venue = HeldPaperVenue()
    engine = held_engine(keyring, venue, placement_wait=60)  # reached only by a sweep that waits for ETHUSDT
    order = make_order(symbol="ETHUSDT", price=Decimal("3000"))

    async def scenario():
        placing = asyncio.create_task(execute_as_oms(engine, keyring, order, sign(order)))
        await venue.placing.wait()
        swept = await engine.emergency_cancel_all(["BTCUSDT"])
        assert not placing.done()
        venue.release.set()
        await placing
        return swept

    assert asyncio.run(scenario()) == ([], [])
