"""Tessera's futures positions against the venue's, in live mode: differences become anomalies.

The reconciler runs :meth:`PositionCheck.check` after each pass over the open orders
(:mod:`services.oms.reconciler`). It asks the Exchange for the venue account's futures
positions (``ListVenuePositions``: Aster's ``positionRisk``, net of hedge-mode sides) and
compares them per symbol with the ledger's futures positions summed over Tessera's
accounts (the Exchange trades every account through the one venue account it holds
credentials for). Spot is not compared: a spot venue reports balances, which count
deposits and transfers, not only what Tessera traded.

A difference is recorded when a check sees the same non-zero difference for a symbol
that an earlier check saw at least ``settle_seconds`` (5 s) before, every check in
between seeing it too: a fill the venue executed moments ago reaches the ledger within
about a second (the fill tracker, then Risk's ledger write every second) and changes
the difference as it lands, while a position opened outside Tessera, a fill Tessera
never recorded, or a ledger that stopped following stays put. With the reconciler's
default interval (10 s) that is two consecutive passes. Each such difference is recorded once, as an
``execution_anomalies`` row of kind ``VENUE_POSITION_MISMATCH`` (counted by
``tessera_execution_anomalies_total``) and a log line; a symbol whose positions agree
again is forgotten, so a later difference is recorded anew. Nothing is halted: unlike an
order the reconciler cannot explain, a position difference may have a cause outside
Tessera (a manual trade, a liquidation, positions from before Tessera), and an operator
decides (the kill switch, a symbol's trading state).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from decimal import Decimal
from typing import Any, Callable

from services.domain import MarketType
from services.store import UnitOfWork
from services.store.database import Database

from .gateway import ExchangeGateway

log = logging.getLogger(__name__)

KIND = "VENUE_POSITION_MISMATCH"
#: The venue name recorded with the anomaly: the one venue the Exchange service trades on.
VENUE = "aster"


@dataclasses.dataclass(frozen=True)
class Mismatch:
    symbol: str
    venue_quantity: Decimal
    ledger_quantity: Decimal
    #: The Tessera account, with a venue accounts registry; "" for the single venue account.
    account: str = ""

    @property
    def difference(self) -> Decimal:
        return self.venue_quantity - self.ledger_quantity


def ledger_futures_by_account(uow: UnitOfWork, accounts: set[str]) -> dict[tuple[str, str], Decimal]:
    """The ledger's futures positions of ``accounts``, per account and symbol (flat ones left out)."""
    held: dict[tuple[str, str], Decimal] = {}
    for position in uow.positions.list(market_type=MarketType.FUTURES):
        if position.quantity and position.account in accounts:
            key = (position.account, position.symbol)
            held[key] = held.get(key, Decimal(0)) + position.quantity
    return held


def ledger_futures(uow: UnitOfWork) -> dict[str, Decimal]:
    """The ledger's futures positions, summed over accounts, per symbol (flat ones left out)."""
    net: dict[str, Decimal] = {}
    for position in uow.positions.list(market_type=MarketType.FUTURES):
        if position.quantity:
            net[position.symbol] = net.get(position.symbol, Decimal(0)) + position.quantity
    return net


class PositionCheck:
    """See the module docstring. ``stub``: the Exchange service's; ``keyring`` signs the
    OMS's per-call credential."""

    def __init__(self, db: Database[Any], keyring: Any, stub: Any, *, timeout_seconds: float = 10.0,
                 settle_seconds: float = 5.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.keyring = keyring
        self.stub = stub
        self.gateway = ExchangeGateway(stub, keyring, timeout=timeout_seconds)
        self.timeout_seconds = timeout_seconds
        self.settle_seconds = settle_seconds
        self.monotonic = monotonic
        # each difference and when it was first seen, by (account, symbol)
        self._seen: dict[tuple[str, str], tuple[Mismatch, float]] = {}
        self._reported: dict[tuple[str, str], Decimal] = {}

    async def check(self) -> list[Mismatch]:
        """Compare once; returns the mismatches recorded by this check (raises the
        Exchange's ``AioRpcError`` when it cannot answer)."""
        answer = await self.gateway.venue_futures_positions_by_account(timeout=self.timeout_seconds)
        if answer is None:
            return []  # paper and shadow: no venue account to compare with
        accounts, venue = answer
        if accounts:  # a registry: each venue account against its own Tessera account
            wanted = set(accounts)
            ledger = await self.db.read(lambda uow: ledger_futures_by_account(uow, wanted))
        else:  # one venue account for every Tessera account
            ledger = {("", symbol): quantity for symbol, quantity in (await self.db.read(ledger_futures)).items()}
        differing = {}
        for key in sorted(venue.keys() | ledger.keys()):
            mismatch = Mismatch(key[1], venue.get(key, Decimal(0)), ledger.get(key, Decimal(0)), account=key[0])
            if mismatch.difference:
                differing[key] = mismatch
        now = self.monotonic()
        seen = {}
        for symbol, mismatch in differing.items():
            earlier = self._seen.get(symbol)
            since = earlier[1] if earlier is not None and earlier[0].difference == mismatch.difference else now
            seen[symbol] = (mismatch, since)
        confirmed = [m for symbol, (m, since) in seen.items()
                     if now - since >= self.settle_seconds and self._reported.get(symbol) != m.difference]
        self._seen = seen
        self._reported = {s: d for s, d in self._reported.items() if s in differing}
        if confirmed:
            await self.db.run(self._record, confirmed)
            for mismatch in confirmed:
                self._reported[(mismatch.account, mismatch.symbol)] = mismatch.difference
        return confirmed

    @staticmethod
    def _record(uow: UnitOfWork, mismatches: list[Mismatch]) -> None:
        for m in mismatches:
            whose = f"account {m.account}: " if m.account else ""
            detail = (f"{whose}{m.symbol} futures: the venue holds {m.venue_quantity}, Tessera's ledger "
                      f"{m.ledger_quantity} (difference {m.difference})")
            log.error("position mismatch: %s", detail)
            payload = {"symbol": m.symbol, "market_type": MarketType.FUTURES.value,
                       "venue_quantity": str(m.venue_quantity), "ledger_quantity": str(m.ledger_quantity),
                       "difference": str(m.difference)}
            if m.account:
                payload["account"] = m.account
            uow.anomalies.record(kind=KIND, venue=VENUE, order_id=None, detail=detail, payload=payload)


__all__ = ["KIND", "Mismatch", "PositionCheck", "ledger_futures"]
