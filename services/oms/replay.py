"""Safe retries: a submission repeated after a lost answer gets the answer, not a refusal.

A client whose SubmitOrder answer was lost (a timeout, a dropped connection) cannot tell
a submitted order from a refused one; it sends the same order with the same risk token
again. The claim of that second request fails (the token moved the order already), and
only then, on that failing path, the OMS looks at the order's claim: when its SUBMITTED
event was made with this very token (the same key id and nonce, which only the holder of
that token can present, bound to the order's signed fields), the answer is the order as
it is now with its trades, marked ``replayed``, exactly what a success would have said
(SUBMITTED while the first submission is still under way or in doubt). Nothing is sent to
the venue again. Another token of the same order (a second ValidateOrder of it), or an
order that never left APPROVED, is still refused: the token's single use holds.

The normal path pays nothing for this: the check runs only for claims that already failed.
"""

from __future__ import annotations

from typing import Any, Sequence

from services.domain import Order, OrderStatus, Trade
from services.domain.errors import DomainError, TokenReplayed
from services.store import UnitOfWork
from services.store.database import Database

#: The claim refusals a retry of a submission meets: the token moved the order already
#: (it is open or filled), or the order moved on past it (rejected by the venue, expired,
#: cancelled after its submission).
REPLAY_REASONS = frozenset({"TOKEN_ALREADY_USED", "ORDER_NOT_APPROVED"})


def claim_of(events: Sequence[Any]) -> dict[str, Any] | None:
    """The payload of the order's claim (its APPROVED -> SUBMITTED event), if it has one."""
    for event in events:
        if event.to_status is OrderStatus.SUBMITTED and event.from_status is OrderStatus.APPROVED:
            return event.payload or {}
    return None


def _read(uow: UnitOfWork, wanted: Sequence[tuple[str, str, str]]) -> dict[str, tuple[Order, list[Trade] | None]]:
    """For each (order id, key id, nonce): the order, and its trades when this token claimed it."""
    found: dict[str, tuple[Order, list[Trade] | None]] = {}
    for order_id, key_id, nonce in wanted:
        order = uow.orders.get(order_id)
        if order is None:
            continue
        claim = claim_of(uow.orders.events(order_id))
        same_token = claim is not None and claim.get("token_nonce") == nonce and claim.get("token_key_id") == key_id
        found[order_id] = (order, uow.trades.for_order(order_id) if same_token else None)
    return found


async def answer_replays(db: Database[Any], results: list[Any], candidates: Sequence[tuple[int, str, str, str]],
                         make: Any) -> None:
    """Turn the refusals in ``results`` at the indexes of ``candidates`` (index, order id,
    token key id, token nonce) into replayed answers (``make(order, trades)``) where the
    order was claimed with that token; the others stay refusals, naming the order's
    current status."""
    read = await db.read(_read, [(order_id, key_id, nonce) for _, order_id, key_id, nonce in candidates])
    for index, order_id, _, _ in candidates:
        entry = read.get(order_id)
        if entry is None:
            continue
        order, trades = entry
        if trades is not None:
            results[index] = make(order, trades)
        elif isinstance(results[index], TokenReplayed):
            results[index] = _refusal_now(results[index], order)


def _refusal_now(error: DomainError, order: Order) -> TokenReplayed:
    return TokenReplayed(f"risk token already used: the order is {order.status.value}",
                         metadata={**error.metadata, "order_id": order.order_id, "status": order.status.value})


__all__ = ["REPLAY_REASONS", "answer_replays", "claim_of"]
