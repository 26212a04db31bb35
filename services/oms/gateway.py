"""The OMS's gateway to the Exchange service: the only module that speaks exchange.v1.

Every call is signed with the OMS's credential (see :mod:`services.common.tokens`): for
its method and the digest of its request's bytes, good once, for 30 s. The request
message is built once and the credential signs its serialization; the stub serializes
that same message object again, which gives the same bytes (the messages have no map
fields, and one protobuf implementation serializes one message deterministically);
a difference would be refused by the Exchange, never accepted. Every call
waits for a restarting Exchange within its deadline (``wait_for_ready``: a call made
while the Exchange is down is sent when it is back, instead of failing unsent), and
is signed afresh and sent again when an Exchange that has just restarted refuses its
credential for being issued before it started (``SERVICE_CREDENTIAL_BEFORE_START``: the
call did nothing there), and
comes back as data the OMS acts on: the reports of an execution, or a
:class:`Refusal` carrying the status code and the reason the Exchange put in the
structured ``google.rpc.ErrorInfo`` of its status (never parsed out of the text).

A refusal is *definitive* when it proves the order never reached a venue (a bad
token, an invalid order, a venue rule): the OMS may close the order. Everything else
(no answer, the Exchange already executed it, the venue already holds its client
order id) leaves the order in doubt, for the reconciler to settle by asking the venue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from decimal import Decimal
from typing import Any, Awaitable, Callable, Sequence

import grpc

import core_ext
from services.common import convert
from services.common.errors import error_info
from services.common.observability.interceptors import client_span, outgoing_metadata
from services.common.tokens import SERVICE_CREDENTIAL_BEFORE_START, oms_call_metadata
from services.domain import Order
from services.domain.execution import CancelFailure, ExecutionReport
from tessera.common.v1 import types_pb2 as common_pb
from tessera.exchange.v1 import exchange_pb2, exchange_pb2_grpc

_DEFINITIVE_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
# ...except these: the Exchange has executed the order already (a retry, or a call
# that reached it before this one), or the venue already holds an order with its client
# order id. The venue may hold it: in doubt, not refused (the reconciler asks the venue).
IN_DOUBT_REASONS = frozenset({"TOKEN_ALREADY_USED", "DUPLICATE_CLIENT_ORDER_ID"})
#: At most this many orders per ExecuteOrders call.
EXECUTE_BATCH = 1000
#: How long a call refused for its credential's issue time (an Exchange that has just
#: restarted) waits before it is signed afresh and sent again.
CREDENTIAL_RETRY_SECONDS = 0.25
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Refusal:
    """The Exchange did not execute (or did not answer): its code, reason and text."""

    code: grpc.StatusCode
    reason: str
    detail: str
    #: The venue's request and answer as exact JSON text, when the venue refused.
    venue_payload: str | None = None

    @property
    def definitive(self) -> bool:
        """True when the order certainly never reached a venue."""
        return self.code in _DEFINITIVE_CODES and self.reason not in IN_DOUBT_REASONS

    @property
    def not_found(self) -> bool:
        return self.code is grpc.StatusCode.NOT_FOUND


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ``ErrorInfo`` reason of a failed call; the status code's name without one."""
    info = error_info(error)
    return info.reason if info is not None else error.code().name


def refusal_of(error: grpc.aio.AioRpcError) -> Refusal:
    info = error_info(error)
    return Refusal(error.code(), info.reason if info is not None else error.code().name, error.details() or "",
                   (info.metadata.get("venue_payload") or None) if info is not None else None)


@dataclasses.dataclass(frozen=True)
class Swept:
    """The Exchange's answer to the venue-wide cancel: the reports of the orders it follows
    that were cancelled, and what it could not cancel (empty: everything was)."""

    reports: list[ExecutionReport]
    failures: list[CancelFailure]


@dataclasses.dataclass(frozen=True)
class Executed:
    """The Exchange's answer to an execution: the venue's reports so far."""

    reports: list[ExecutionReport]
    mode: int


@dataclasses.dataclass
class _Pending:
    """An execution asked for, waiting for the end of the event loop's turn."""

    order: common_pb.Order
    token: str
    remaining: float | None
    future: "asyncio.Future[Executed | Refusal]"
    orphaned: Callable[["Executed | Refusal"], Awaitable[Any]] | None


class ExchangeGateway:
    """Signed calls to the Exchange service, answered as data.

    Parameters
    ----------
    stub
        An ``ExchangeServiceStub`` (or a test double with its methods).
    keyring
        Signs the OMS's per-call credential.
    timeout
        The longest an execution or a cancel waits for its answer (seconds).
    wall
        The wall clock (epoch seconds) the credentials are signed at.
    channel
        The ``grpc.aio.Channel`` the stub calls through, for :meth:`ready` (``None``:
        always ready, as for a test double).
    """

    def __init__(self, stub: exchange_pb2_grpc.ExchangeServiceStub, keyring: "core_ext.KeyRing", *,
                 timeout: float = 10.0, wall: Callable[[], float] = time.time, channel: Any = None) -> None:
        self.stub = stub
        self.keyring = keyring
        self.timeout = timeout
        #: The time the OMS's per-call credentials are signed at (epoch seconds).
        self.wall = wall
        self.channel = channel
        #: The executions asked for in this turn of the event loop, and the calls sending them.
        self._pending: list[_Pending] = []
        self._pending_loop: asyncio.AbstractEventLoop | None = None
        self._sending: set[asyncio.Future[None]] = set()

    async def ready(self, within: float | None = None) -> bool:
        """Whether the Exchange is connected, waiting up to ``within`` seconds (the
        caller's time left, a margin kept to answer; ``None``: the gateway's timeout)
        for a restarting one to come back.

        The OMS asks before it claims orders for the venue: an order is claimed (and
        from then on in doubt if no answer comes) only when its execution can be sent
        at once, so the time the reconciler allows an order to reach the venue (the
        grace period, longer than ``timeout``) still counts from the claim. A connected
        channel answers at once, without waiting.
        """
        if self.channel is None:
            return True
        if self.channel.get_state(try_to_connect=True) is grpc.ChannelConnectivity.READY:
            return True
        wait = self.timeout if within is None else within - 0.05
        if wait <= 0:
            return False
        try:
            await asyncio.wait_for(self.channel.channel_ready(), wait)
        except asyncio.TimeoutError:
            return False
        return True

    async def _call(self, method: str, request: Any, timeout: float, **options: Any) -> Any:
        """``method`` with a credential for ``request`` signed now (raises ``AioRpcError``).

        Refused ``SERVICE_CREDENTIAL_BEFORE_START``, the call did nothing at the Exchange:
        it started after the credential's issue second (it has just restarted, or this
        clock is behind its own). The call is then signed afresh and sent again, every
        ``CREDENTIAL_RETRY_SECONDS``, within ``timeout`` in all."""
        deadline = time.monotonic() + timeout
        call = getattr(self.stub, method)
        while True:
            try:
                return await call(request, timeout=timeout, metadata=(
                    *oms_call_metadata(self.keyring, method, request, now=self.wall()), *outgoing_metadata()),
                    **options)
            except grpc.aio.AioRpcError as error:
                timeout = deadline - time.monotonic() - CREDENTIAL_RETRY_SECONDS
                if timeout <= 0 or reason_of(error) != SERVICE_CREDENTIAL_BEFORE_START:
                    raise
            await asyncio.sleep(CREDENTIAL_RETRY_SECONDS)

    def _deadline(self, remaining: float | None) -> float:
        """The call's timeout: the gateway's, within what the caller has left (a margin
        kept to answer it)."""
        if remaining is None:
            return self.timeout
        return max(0.05, min(self.timeout, remaining - 0.05))

    # -- executions ---------------------------------------------------------------------------
    async def execute(self, order: common_pb.Order, token: str, *, remaining: float | None = None,
                      orphaned: Callable[[Executed | Refusal], Awaitable[Any]] | None = None
                      ) -> Executed | Refusal:
        """Execute one order; ``remaining``: the submitting client's time left (seconds).

        The orders submitted in the same turn of the event loop (the claims one group
        commit made durable resume together) go to the Exchange as one ``ExecuteOrders``
        call: one call, one credential and one execution write at the Exchange for all of
        them, instead of one each. An order alone goes as ``ExecuteOrder``, at once. The
        call runs apart from its callers: one that is cancelled (its client's deadline)
        does not cancel the others' call, and its answer, when it comes, is handed to
        ``orphaned`` (the OMS records it, awaited in the call's task) instead of being lost. The call's deadline is
        the longest its callers have left (within the gateway's timeout); each caller
        still answers its own client within its own deadline, by being cancelled.
        """
        loop = asyncio.get_running_loop()
        if self._pending and self._pending_loop is not loop:
            self._pending = []  # asked for on a loop that stopped before its turn ended: nobody waits
        self._pending_loop = loop
        future: asyncio.Future[Executed | Refusal] = loop.create_future()
        self._pending.append(_Pending(order, token, remaining, future, orphaned))
        if len(self._pending) == 1:
            loop.call_soon(self._send_pending)
        return await future

    def _send_pending(self) -> None:
        pending, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(pending))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, pending: list["_Pending"]) -> None:
        try:
            if len(pending) == 1:
                answers = [await self._execute_one(pending[0].order, pending[0].token, pending[0].remaining)]
            else:
                remaining = None if any(p.remaining is None for p in pending) else max(p.remaining for p in pending)
                answers = await self.execute_many([(p.order, p.token) for p in pending], remaining=remaining)
        except BaseException as error:  # noqa: BLE001 - every caller gets it
            for item in pending:
                if not item.future.done():
                    item.future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        orphans = []
        for item, answer in zip(pending, answers):
            if not item.future.done():
                item.future.set_result(answer)
            elif item.orphaned is not None:
                orphans.append(item.orphaned(answer))
        # Stored in this call's own task (kept until done, see _send_pending), once
        # every caller still waiting has its answer.
        for outcome in await asyncio.gather(*orphans, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("the answer of an execution whose submitter went away was not stored: %r", outcome)

    async def _execute_one(self, order: common_pb.Order, token: str, remaining: float | None) -> Executed | Refusal:
        try:
            with client_span("tessera.exchange.v1.ExchangeService/ExecuteOrder"):
                request = exchange_pb2.ExecuteOrderRequest(order=order, risk_token=token)
                response = await self._call("ExecuteOrder", request, self._deadline(remaining), wait_for_ready=True)
        except grpc.aio.AioRpcError as error:
            return refusal_of(error)
        return Executed([convert.report_from_proto(r) for r in response.reports], response.mode)

    async def execute_many(self, items: Sequence[tuple[common_pb.Order, str]], *, remaining: float | None = None
                           ) -> list[Executed | Refusal]:
        """Execute orders in ``ExecuteOrders`` calls of up to ``EXECUTE_BATCH``; each gets
        what one ``execute`` would have given it (a failed call: all of its orders)."""
        answers: list[Executed | Refusal] = []
        for start in range(0, len(items), EXECUTE_BATCH):
            answers += await self._execute_batch(items[start:start + EXECUTE_BATCH], remaining)
        return answers

    async def _execute_batch(self, items: Sequence[tuple[common_pb.Order, str]], remaining: float | None
                             ) -> list[Executed | Refusal]:
        try:
            with client_span("tessera.exchange.v1.ExchangeService/ExecuteOrders"):
                request = exchange_pb2.ExecuteOrdersRequest(
                    orders=[exchange_pb2.ExecuteOrderRequest(order=order, risk_token=token) for order, token in items]
                )
                response = await self._call("ExecuteOrders", request, self._deadline(remaining), wait_for_ready=True)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                # An Exchange from before ExecuteOrders: one call per order.
                return list(await asyncio.gather(*(self._execute_one(order, token, remaining)
                                                   for order, token in items)))
            return [refusal_of(error)] * len(items)
        if len(response.results) != len(items):
            detail = f"ExecuteOrders answered {len(response.results)} results for {len(items)} orders"
            return [Refusal(grpc.StatusCode.INTERNAL, "INTERNAL", detail)] * len(items)
        answers: list[Executed | Refusal] = []
        for result in response.results:
            if result.HasField("error"):
                code = getattr(grpc.StatusCode, result.error.code, grpc.StatusCode.UNKNOWN)
                answers.append(Refusal(code, result.error.reason or code.name, result.error.message,
                                       result.error.metadata.get("venue_payload") or None))
            else:
                answers.append(Executed([convert.report_from_proto(r) for r in result.response.reports],
                                        result.response.mode))
        return answers

    # -- cancels and questions ------------------------------------------------------------------
    async def cancel(self, order: Order) -> ExecutionReport | Refusal:
        try:
            with client_span("tessera.exchange.v1.ExchangeService/CancelOrder"):
                response = await self._cancel(order)
        except grpc.aio.AioRpcError as error:
            return refusal_of(error)
        return convert.report_from_proto(response.report)

    async def _cancel(self, order: Order) -> Any:
        request = exchange_pb2.CancelOrderRequest(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            remote_order_id=order.remote_order_id or "",
            symbol=order.symbol,
            market_type=convert.enum_to_proto(order.market_type),
            account=order.account,
        )
        return await self._call("CancelOrder", request, self.timeout)

    async def query(self, order: Order, *, timeout: float | None = None) -> Any:
        """``QueryOrder``: the venue's view of one order (raises ``AioRpcError``)."""
        request = exchange_pb2.QueryOrderRequest(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            remote_order_id=order.remote_order_id or "",
            symbol=order.symbol,
            market_type=convert.enum_to_proto(order.market_type),
            account=order.account,
            venue=order.venue,
            side=convert.enum_to_proto(order.side),
        )
        return await self._call("QueryOrder", request, timeout or self.timeout)

    async def emergency_cancel_all(self) -> Swept | Refusal:
        """``EmergencyCancelAll`` over every symbol: the Exchange cancels every open order of
        every account it trades for at the venue (``allOpenOrders``), those placed outside
        Tessera too; the reports are those of the orders it follows, the failures what it
        could not cancel (every other account and symbol was tried all the same)."""
        try:
            request = exchange_pb2.EmergencyCancelAllRequest()
            response = await self._call("EmergencyCancelAll", request, self.timeout)
        except grpc.aio.AioRpcError as error:
            return refusal_of(error)
        return Swept([convert.report_from_proto(r) for r in response.reports],
                     [convert.cancel_failure_from_proto(f) for f in response.failures])

    async def _setting(self, method: str, request: Any) -> Any:
        return await self._call(method, request, self.timeout)

    async def set_leverage(self, account: str, symbol: str, leverage: int) -> int:
        """``SetLeverage`` for an account's symbol: the leverage the venue applied
        (raises ``AioRpcError``)."""
        answer = await self._setting("SetLeverage", exchange_pb2.SetLeverageRequest(
            symbol=symbol, leverage=str(leverage), account=account))
        return int(answer.leverage)

    async def set_margin_mode(self, account: str, symbol: str, margin_mode: int) -> int:
        """``SetMarginMode`` (a ``tessera.common.v1.MarginMode``): the mode the venue
        applied (raises ``AioRpcError``)."""
        answer = await self._setting("SetMarginMode", exchange_pb2.SetMarginModeRequest(
            symbol=symbol, margin_mode=margin_mode, account=account))
        return int(answer.margin_mode)

    async def set_position_mode(self, account: str, hedge: bool) -> bool:
        """``SetPositionMode``: True when the venue applied hedge mode (raises ``AioRpcError``)."""
        answer = await self._setting("SetPositionMode", exchange_pb2.SetPositionModeRequest(
            account=account, hedge_mode=hedge))
        return bool(answer.hedge_mode)

    async def list_venue_settings(self) -> Any:
        """``ListVenueSettings``: what the Exchange holds per account (raises ``AioRpcError``)."""
        request = exchange_pb2.ListVenueSettingsRequest()
        return await self._call("ListVenueSettings", request, self.timeout)

    async def venue_futures_positions_by_account(self, *, timeout: float | None = None
                                                 ) -> tuple[list[str], dict[tuple[str, str], Decimal]] | None:
        """``ListVenuePositions`` by account: the accounts the answer covers (empty: the
        Exchange's single venue account, every position under account ``""``) and the
        futures positions by (account, symbol); None in paper or shadow mode. Raises the
        call's ``AioRpcError``."""
        request = exchange_pb2.ListVenuePositionsRequest()
        answer = await self._call("ListVenuePositions", request, timeout or self.timeout)
        if answer.mode != common_pb.EXECUTION_MODE_LIVE:
            return None
        return list(answer.accounts), {(p.account, p.symbol): Decimal(p.quantity) for p in answer.positions
                                       if p.market_type in (common_pb.MARKET_TYPE_FUTURES,
                                                            common_pb.MARKET_TYPE_UNSPECIFIED)}

    def reports(self, after_sequence: int = 0) -> Any:
        """``StreamExecutionReports`` from ``after_sequence``: the reports the Exchange
        learns later (resting orders filling, the venue's own cancels)."""
        request = exchange_pb2.StreamExecutionReportsRequest(after_sequence=after_sequence)
        return self.stub.StreamExecutionReports(
            request, metadata=oms_call_metadata(self.keyring, "StreamExecutionReports", request, now=self.wall()))


SIMULATED_MODES = (common_pb.EXECUTION_MODE_PAPER, common_pb.EXECUTION_MODE_SHADOW)

__all__ = ["EXECUTE_BATCH", "ExchangeGateway", "Executed", "IN_DOUBT_REASONS", "Refusal", "SIMULATED_MODES",
           "Swept", "reason_of", "refusal_of"]
