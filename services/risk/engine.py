"""The risk gate: check an order, persist the decision, sign the approved ones.

The order row and its PENDING -> APPROVED (or REJECTED) events are written in one
transaction; the token is returned only after that commit, so every token Tessera
has issued belongs to a stored, approved order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import core_ext
from services.common.db import Database
from services.common.observability import metrics
from services.domain import Order, OrderStatus, TradingState, new_id, utcnow
from services.domain.errors import Conflict, InvalidOrder
from services.store import DuplicateClientOrderId, TradingStateRecord, UnitOfWork

from .checks import Violation, check_order
from .context import load_context
from .kill_switch import trip_on_daily_loss
from .limits import RiskLimits
from .prices import PriceSource, StaticPrices


@dataclasses.dataclass
class Decision:
    order: Order
    token: str = ""
    violations: list[Violation] = dataclasses.field(default_factory=list)


def new_client_order_id() -> str:
    return "tsr-" + uuid.uuid4().hex[:28]


class RiskEngine:
    def __init__(
        self, db: Database, keyring: "core_ext.KeyRing", limits: RiskLimits, prices: PriceSource | None = None
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.limits = limits
        self.prices = prices if prices is not None else StaticPrices(limits.reference_prices)

    async def validate(self, order: Order, *, fresh_client_order_id: bool = False) -> Decision:
        """Decide ``order`` and store the decision.

        ``fresh_client_order_id``: Risk generated the order's client order id just now
        (the client sent none), so no stored order can have it and the look-up that
        makes a client's retry idempotent is skipped.
        """
        try:
            return await self.db.run(self._decide, order, not fresh_client_order_id)
        except DuplicateClientOrderId:
            # A concurrent request stored the same client order id first: answer as
            # its retry would.
            return await self.db.run(self._decide, order, True)

    def _decide(self, uow: UnitOfWork, order: Order, look_up: bool = True) -> Decision:
        existing = uow.orders.get_by_client_order_id(order.account, order.client_order_id) if look_up else None
        if existing is not None:
            return self._replay(uow, existing, order)
        now = utcnow()
        self._check_references(uow, order, now)
        context = load_context(uow, order, self.limits, self.prices, now)
        violations = check_order(order, self.limits, context)
        trip_on_daily_loss(uow, order, violations)
        order.order_time = order.updated_time = now
        order.record_creation(now)
        token = ""
        if violations:
            codes = [v.code for v in violations]
            metrics.risk_rejected(codes)
            order.reject_reasons = codes
            order.transition(
                OrderStatus.REJECTED,
                reason="risk: " + ",".join(codes),
                at=now,
                payload={"violations": [dataclasses.asdict(v) for v in violations]},
            )
        else:
            order.transition(OrderStatus.APPROVED, reason="risk: approved", at=now)
            # Signed inside the transaction, returned only after it commits: every
            # token Tessera hands out belongs to a stored, approved order.
            token = self._sign(order, now)
        uow.orders.add(order)
        return Decision(order, token=token, violations=violations)

    def _sign(self, order: Order, now: dt.datetime) -> str:
        token = core_ext.sign_token(self.keyring, order.token_body(), int(now.timestamp()))
        order.token_nonce = token.split(".")[3]
        return token

    @staticmethod
    def _check_references(uow: UnitOfWork, order: Order, now: dt.datetime) -> None:
        if order.expire_time is not None and order.expire_time <= now:
            raise InvalidOrder("expire_time", "is in the past")
        if order.order_manager_id is None:
            return
        manager = uow.order_managers.get(order.order_manager_id)
        if manager is None:
            raise InvalidOrder("order_manager_id", f"no order manager {order.order_manager_id!r}: create it first")
        if manager.target_account_uid != order.account:
            raise InvalidOrder("order_manager_id", f"order manager {order.order_manager_id!r} targets another account")

    def _replay(self, uow: UnitOfWork, existing: Order, order: Order) -> Decision:
        """Idempotent retry: the same order again returns the stored one and sends nothing.

        A still-APPROVED order gets a fresh token (the retrying client may never have
        received the first); its approval time moves with it, so expiry sweeps count
        from the token the client holds.
        """
        order.order_id = existing.order_id
        if not existing.same_economics(order):
            raise Conflict(
                f"client_order_id {order.client_order_id!r} of account {order.account!r} "
                "is already used by an order with other fields",
                reason="DUPLICATE_CLIENT_ORDER_ID",
            )
        violations = [Violation(code, "rejected when first validated") for code in existing.reject_reasons]
        token = ""
        if existing.status is OrderStatus.APPROVED:
            now = utcnow()
            token = self._sign(existing, now)
            existing.updated_time = now
            uow.orders.save(existing)
        return Decision(existing, token=token, violations=violations)

    async def trading_state(self) -> TradingStateRecord:
        return await self.db.read(lambda uow: uow.trading_state.get())

    async def set_trading_state(self, state: TradingState, operator: str, reason: str) -> TradingState:
        def change(uow: UnitOfWork) -> TradingState:
            previous = uow.trading_state.get().state
            uow.trading_state.set(state, operator, reason)
            return previous

        return await self.db.run(change)


__all__ = ["Decision", "RiskEngine", "new_client_order_id", "new_id"]
