"""The exchange's integration tests' helpers: providers against the venue simulator, in
process. :func:`running_venue` starts the simulator on a free loopback port inside the
test's event loop and yields a :class:`SimVenue` (the simulator object, its URL, helpers
to build transports signed with its key).

Imported by name (``from venue_sim_support import ...``), not from ``conftest``: every
test directory has a ``conftest`` module, and which one that name finds depends on what
else the run collected."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from decimal import Decimal
from typing import Any, AsyncIterator

import order_factory
from aiohttp import web

from services.domain import Order, OrderType
from services.exchange.aster.credentials import VenueCredentials, WalletCredentials
from services.exchange.aster.signing import Credentials
from services.exchange.aster.transport import AsterTransport
from services.venue_sim.app import Fault, VenueSimulator, build_app
from services.venue_sim.state import SymbolSpec, VenueState

API_KEY = "sim-key-0123456789"
API_SECRET = "sim-secret-0123456789abcdef"
# Two V3 API wallets: Aster's documented demonstration wallet, and one of the tests' own.
WALLET_A = ("0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e", "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0",
            "0x4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1")
WALLET_B = ("0x1111111111111111111111111111111111111111", "0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1",
            "0x" + "01" * 32)


def wallet(fields: tuple[str, str, str] = WALLET_A, **options: Any) -> WalletCredentials:
    return WalletCredentials(*fields, **options)


def specs() -> list[SymbolSpec]:
    return [
        SymbolSpec("BTCUSDT", Decimal("65000"), tick=Decimal("0.1"), level_quantity=Decimal("0.5"), levels=5),
        SymbolSpec("ETHUSDT", Decimal("3200"), tick=Decimal("0.01"), level_quantity=Decimal("10")),
    ]


@dataclasses.dataclass
class SimVenue:
    sim: VenueSimulator
    url: str

    def transport(
        self,
        *,
        secret: str = API_SECRET,
        public_only: bool = False,
        credentials: VenueCredentials | None = None,
        **options: Any,
    ) -> AsterTransport:
        options.setdefault("timeout_seconds", 1.0)
        options.setdefault("retry_backoff", 0.01)
        if credentials is None and not public_only:
            credentials = Credentials(API_KEY, secret)
        return AsterTransport(futures_url=self.url, credentials=credentials, public_only=public_only, **options)

    def register(self, *wallets: tuple[str, str, str]) -> None:
        """Register V3 API wallets (user, signer; the venue never sees the key)."""
        for user, signer, _ in wallets:
            self.sim.add_wallet(user, signer)

    def fault(self, kind: str, **fields: Any) -> None:
        self.sim.faults.append(Fault(kind, **fields))

    def requests(self, method: str | None = None, suffix: str | None = None) -> list[dict[str, Any]]:
        return [
            r for r in self.sim.requests
            if method in (None, r["method"]) and (suffix is None or r["path"].endswith(suffix))
        ]


@contextlib.asynccontextmanager
async def running_venue(*, sim_options: dict[str, Any] | None = None, **state_options: Any) -> AsyncIterator[SimVenue]:
    sim = VenueSimulator(VenueState(specs(), **state_options), api_key=API_KEY, api_secret=API_SECRET,
                         **(sim_options or {}))
    runner = web.AppRunner(build_app(sim, due_interval=0.02), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield SimVenue(sim, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


async def streaming_provider(venue: SimVenue, **options: Any) -> tuple[Any, WalletCredentials, list[Any]]:
    """A live provider on API wallet A (registered here), started with a sink that keeps
    every report it is given: (provider, its credentials, the reports)."""
    from services.exchange.providers.live import LiveProvider

    venue.register(WALLET_A)
    credentials = wallet()
    provider = LiveProvider(venue.transport(credentials=credentials), **{"poll_seconds": 0, **options})
    streamed: list[Any] = []

    async def sink(reports: list[Any]) -> None:
        streamed.extend(reports)

    await provider.start(sink)
    return provider, credentials, streamed


def build_order(**overrides: Any) -> Order:
    """A MARKET BUY of 0.01 BTCUSDT on FUTURES at ``aster`` for ``acct-1``."""
    return order_factory.build_order(**{"client_order_id": f"it-{uuid.uuid4().hex[:12]}", "venue": "aster",
                                        "order_type": OrderType.MARKET, "quantity": Decimal("0.01"),
                                        "price": None, **overrides})
