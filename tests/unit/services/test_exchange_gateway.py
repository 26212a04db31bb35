"""The OMS's Exchange gateway: a refusal's reason comes from the structured
``google.rpc.ErrorInfo`` in the status trailers, never from the text; a call refused for
its credential's issue time (an Exchange that has just restarted) is signed afresh and
sent again; and the gateway is the one module of the OMS that speaks ``exchange.v1``."""

from __future__ import annotations

import ast
import asyncio
import pathlib

import grpc
import pytest

import core_ext
from services.common.errors import describe, to_grpc_status
from services.common.tokens import OMS_CREDENTIAL_METADATA
from services.domain.errors import DomainError
from services.exchange.engine import ExchangeEngine
from services.oms.gateway import CREDENTIAL_RETRY_SECONDS, ExchangeGateway, Refusal, reason_of, refusal_of
from tessera.exchange.v1 import exchange_pb2

OMS = pathlib.Path(__file__).resolve().parents[3] / "services" / "oms"


def _error(code: grpc.StatusCode, details: str, trailing: tuple = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details)


def test_the_reason_is_the_error_infos_even_when_the_text_names_another():
    trailing = tuple(to_grpc_status(grpc.StatusCode.FAILED_PRECONDITION, "VENUE_RULE", "x").trailing_metadata)
    error = _error(grpc.StatusCode.FAILED_PRECONDITION, "TOKEN_EXPIRED: text that looks like a reason", trailing)

    refusal = refusal_of(error)

    assert reason_of(error) == "VENUE_RULE"
    assert refusal == Refusal(grpc.StatusCode.FAILED_PRECONDITION, "VENUE_RULE",
                              "TOKEN_EXPIRED: text that looks like a reason")
    assert refusal.definitive


def test_without_an_error_info_the_reason_is_the_status_codes_name_not_parsed_from_the_text():
    error = _error(grpc.StatusCode.INVALID_ARGUMENT, "TOKEN_ALREADY_USED: no trailers")
    assert reason_of(error) == "INVALID_ARGUMENT"
    # An in-doubt reason named only in the text does not make the refusal in doubt.
    assert refusal_of(error).definitive


def test_status_details_that_do_not_parse_give_the_codes_name():
    error = _error(grpc.StatusCode.UNAVAILABLE, "down", (("grpc-status-details-bin", b"\xff\x00not a status"),))
    assert reason_of(error) == "UNAVAILABLE"
    assert not refusal_of(error).definitive


def test_an_in_doubt_reason_in_the_error_info_leaves_the_order_in_doubt():
    trailing = tuple(to_grpc_status(grpc.StatusCode.ALREADY_EXISTS, "TOKEN_ALREADY_USED", "again").trailing_metadata)
    refusal = refusal_of(_error(grpc.StatusCode.ALREADY_EXISTS, "again", trailing))
    assert refusal.reason == "TOKEN_ALREADY_USED" and not refusal.definitive


def _imports(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_only_the_gateway_builds_exchange_messages():
    speaking = sorted(path.name for path in OMS.glob("*.py")
                      if "tessera.exchange.v1.exchange_pb2" in _imports(path))
    assert speaking == ["gateway.py"]



class _RestartedExchange:
    """An Exchange stub whose engine was made at ``started`` on its own clock: CancelOrder
    authorizes each call as the servicer does, and answers an empty report."""

    def __init__(self, clock: list[float], started: float) -> None:
        self.keyring = core_ext.KeyRing("k1", b"gateway-test-secret-0123456789abcdef")
        self.engine = ExchangeEngine(self.keyring, object(), wall=lambda: clock[0],  # type: ignore[arg-type]
                                     credentials_since=started)
        self.credentials: list[str] = []

    async def CancelOrder(self, request, timeout=None, metadata=None):  # noqa: N802 - the stub's name
        self.credentials.append(dict(metadata)[OMS_CREDENTIAL_METADATA])
        try:
            self.engine.authorize(metadata, "CancelOrder", request)
        except DomainError as error:
            code, reason, message = describe(error)
            status = to_grpc_status(code, reason, message)
            raise _error(status.code, status.details, tuple(status.trailing_metadata)) from None
        return exchange_pb2.CancelOrderResponse()


def _gateway_behind(exchange: _RestartedExchange, clock: list[float], behind: float, monkeypatch) -> ExchangeGateway:
    """A gateway whose clock is ``behind`` seconds behind the Exchange's; its waits move both."""

    async def sleep(seconds):
        clock[0] += seconds

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return ExchangeGateway(exchange, exchange.keyring, wall=lambda: clock[0] - behind)  # type: ignore[arg-type]


def test_a_call_refused_for_a_credential_from_before_the_exchange_started_is_signed_afresh_and_answered(monkeypatch):
    clock = [1_700_000_000.3]
    exchange = _RestartedExchange(clock, started=1_700_000_000.3)  # has just restarted
    gateway = _gateway_behind(exchange, clock, 0.5, monkeypatch)  # the OMS's clock half a second behind
    request = exchange_pb2.CancelOrderRequest(order_id="o-1", symbol="BTCUSDT")

    answer = asyncio.run(gateway._call("CancelOrder", request, 10.0))

    assert answer == exchange_pb2.CancelOrderResponse()
    # Signed at ...999.8, 000.05, 000.3, 000.55, 000.8 (issued ...999 or ...000: before the start), then 001.05.
    assert len(exchange.credentials) == 6 and len(set(exchange.credentials)) == 6
    assert clock[0] == pytest.approx(1_700_000_000.3 + 5 * CREDENTIAL_RETRY_SECONDS)


def test_a_call_refused_for_another_reason_is_not_sent_again(monkeypatch):
    clock = [1_700_000_002.0]
    exchange = _RestartedExchange(clock, started=1_700_000_000.0)
    gateway = _gateway_behind(exchange, clock, 0.0, monkeypatch)
    request = exchange_pb2.CancelOrderRequest(order_id="o-1", symbol="BTCUSDT")
    exchange.engine.replay.claim = lambda *args: "SERVICE_CREDENTIAL_REPLAYED"  # type: ignore[method-assign]

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        asyncio.run(gateway._call("CancelOrder", request, 10.0))

    assert reason_of(refused.value) == "SERVICE_CREDENTIAL_REPLAYED"
    assert len(exchange.credentials) == 1


class _CountingExchange:
    """An Exchange stub that records each execution call and answers every order with an
    empty execution once ``release`` is set."""

    def __init__(self) -> None:
        self.keyring = core_ext.KeyRing("k1", b"gateway-test-secret-0123456789abcdef")
        self.calls: list[tuple[str, list[str]]] = []
        self.release = asyncio.Event()

    async def ExecuteOrder(self, request, timeout=None, metadata=None, wait_for_ready=None):  # noqa: N802
        self.calls.append(("ExecuteOrder", [request.order.order_id]))
        await self.release.wait()
        return exchange_pb2.ExecuteOrderResponse(mode=1)

    async def ExecuteOrders(self, request, timeout=None, metadata=None, wait_for_ready=None):  # noqa: N802
        self.calls.append(("ExecuteOrders", [item.order.order_id for item in request.orders]))
        await self.release.wait()
        return exchange_pb2.ExecuteOrdersResponse(results=[
            exchange_pb2.ExecuteOrderResult(response=exchange_pb2.ExecuteOrderResponse(mode=1))
            for _ in request.orders])


def _order(order_id: str):
    from tessera.common.v1 import types_pb2 as common_pb

    return common_pb.Order(order_id=order_id, symbol="BTCUSDT")


def test_executions_asked_for_in_one_turn_of_the_loop_go_as_one_call_and_a_lone_one_as_execute_order():
    async def run():
        exchange = _CountingExchange()
        gateway = ExchangeGateway(exchange, exchange.keyring)  # type: ignore[arg-type]
        exchange.release.set()
        together = await asyncio.gather(*(gateway.execute(_order(f"o-{i}"), "t") for i in range(3)))
        alone = await gateway.execute(_order("o-9"), "t")
        return exchange.calls, together, alone

    calls, together, alone = asyncio.run(run())

    assert calls == [("ExecuteOrders", ["o-0", "o-1", "o-2"]), ("ExecuteOrder", ["o-9"])]
    assert all(answer.mode == 1 and answer.reports == [] for answer in [*together, alone])


def test_a_caller_that_goes_away_does_not_cancel_the_others_call_and_its_answer_is_handed_on():
    async def run():
        exchange = _CountingExchange()
        gateway = ExchangeGateway(exchange, exchange.keyring)  # type: ignore[arg-type]
        orphans: list = []

        async def keep(answer):
            orphans.append(answer)

        leaving = asyncio.ensure_future(gateway.execute(_order("o-1"), "t", orphaned=keep))
        staying = asyncio.ensure_future(gateway.execute(_order("o-2"), "t", orphaned=keep))
        while not exchange.calls:
            await asyncio.sleep(0)
        leaving.cancel()
        await asyncio.sleep(0)
        exchange.release.set()
        answer = await staying
        await asyncio.gather(*gateway._sending)  # the orphan is stored in the call's own task
        return exchange.calls, answer, leaving.cancelled(), orphans

    calls, answer, cancelled, orphans = asyncio.run(run())

    assert calls == [("ExecuteOrders", ["o-1", "o-2"])]
    assert cancelled and answer.mode == 1
    assert len(orphans) == 1 and orphans[0].mode == 1  # the gone caller's answer, not lost


def test_an_execution_left_on_a_loop_that_stopped_does_not_hold_up_the_next_loops():
    exchange = _CountingExchange()
    gateway = ExchangeGateway(exchange, exchange.keyring)  # type: ignore[arg-type]
    exchange.release.set()
    stopped = asyncio.new_event_loop()
    left: list[asyncio.Task] = []

    def ask() -> None:
        left.append(asyncio.ensure_future(gateway.execute(_order("o-stale"), "t")))
        left[0]._log_destroy_pending = False  # type: ignore[attr-defined] - it is left on purpose

    try:
        stopped.call_soon(ask)
        # The execution is asked for in the next turn, and the loop stops at its end,
        # before the end-of-turn send it scheduled ever runs.
        stopped.call_soon(lambda: stopped.call_soon(stopped.stop))
        stopped.run_forever()
        assert len(gateway._pending) == 1 and not exchange.calls
    finally:
        stopped.close()

    answer = asyncio.run(asyncio.wait_for(gateway.execute(_order("o-next"), "t"), 5))

    assert answer.mode == 1
    assert exchange.calls == [("ExecuteOrder", ["o-next"])]
