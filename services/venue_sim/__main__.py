"""``python -m services.venue_sim`` (also ``tessera venue-sim``): the simulated venue.

Prints ``venue-sim listening on HOST:PORT`` once it serves (port 0 picks a free one),
and stops on SIGTERM or Ctrl-C. The V1 API key and secret it accepts come from
``--api-key``/``--api-secret`` or ``ASTER_API_KEY``/``ASTER_API_SECRET`` (the same
variables the Exchange service reads); more V1 accounts with ``--key KEY:SECRET:ACCOUNT``,
V3 API wallets with ``--wallet USER:SIGNER`` (each user an account of its own; the
simulator needs no private key: it recovers the signer from each signature).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from decimal import Decimal, InvalidOperation
from typing import Sequence

from aiohttp import web

from .app import VenueSimulator, build_app
from .state import SymbolSpec, VenueState

DEFAULT_PRICES = "BTCUSDT=65000,ETHUSDT=3200,SOLUSDT=150"


def default_tick(price: Decimal) -> Decimal:
    if price >= 1000:
        return Decimal("0.1")
    if price >= 10:
        return Decimal("0.01")
    return Decimal("0.0001")


def parse_specs(text: str, *, depth: Decimal, spread_bps: Decimal, levels: int) -> list[SymbolSpec]:
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        symbol, _, price_text = item.partition("=")
        try:
            price = Decimal(price_text)
        except InvalidOperation:
            raise ValueError(f"--prices: {item!r} is not SYMBOL=PRICE") from None
        specs.append(
            SymbolSpec(
                symbol.strip().upper(),
                price,
                tick=default_tick(price),
                spread_bps=spread_bps,
                levels=levels,
                level_quantity=depth,
            )
        )
    if not specs:
        raise ValueError("--prices names no symbol")
    return specs


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="venue-sim", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8600, help="0 picks a free port (default %(default)s)")
    parser.add_argument("--prices", default=os.environ.get("TESSERA_PRICES") or DEFAULT_PRICES,
                        help="SYMBOL=PRICE,... (default: TESSERA_PRICES, else %(default)s)")
    parser.add_argument("--depth", type=Decimal, default=Decimal("1000"), help="quantity per book level")
    parser.add_argument("--spread-bps", type=Decimal, default=Decimal("2"))
    parser.add_argument("--levels", type=int, default=10)
    parser.add_argument("--balance", type=Decimal, default=Decimal("1000000"), help="account balance in USDT")
    parser.add_argument("--weight-limit", type=int, default=2400, help="request weight per minute")
    parser.add_argument("--order-limit", type=int, default=1200, help="orders per minute per account")
    parser.add_argument("--api-key", default=None, help="default: ASTER_API_KEY")
    parser.add_argument("--api-secret", default=None, help="default: ASTER_API_SECRET")
    parser.add_argument("--key", action="append", default=[], metavar="KEY:SECRET:ACCOUNT",
                        help="another V1 API key, for an account of its own (repeatable)")
    parser.add_argument("--wallet", action="append", default=[], metavar="USER:SIGNER",
                        help="a V3 API wallet (signer address) of a user (repeatable)")
    parser.add_argument("--chain-id", type=int, default=1666, help="EIP-712 chainId (1666 mainnet, 714 testnet)")
    parser.add_argument("--listen-key-ttl", type=float, default=3600.0, help="listenKey validity in seconds")
    parser.add_argument("--maker-fee", type=Decimal, default=Decimal("0.0002"), help="negative for a rebate")
    parser.add_argument("--taker-fee", type=Decimal, default=Decimal("0.0004"))
    return parser


async def serve(args: argparse.Namespace) -> None:
    api_key = args.api_key or os.environ.get("ASTER_API_KEY", "")
    api_secret = args.api_secret or os.environ.get("ASTER_API_SECRET", "")
    wallets = [tuple(item.split(":", 1)) for item in args.wallet]
    keys = [item.split(":", 2) for item in args.key]
    if any(len(w) != 2 for w in wallets) or any(len(k) != 3 for k in keys):
        print("venue-sim: configuration error: --wallet is USER:SIGNER, --key is KEY:SECRET:ACCOUNT", file=sys.stderr)
        raise SystemExit(2)
    if not (api_key and api_secret) and not wallets and not keys:
        print("venue-sim: configuration error: ASTER_API_KEY and ASTER_API_SECRET (or --api-key/--api-secret), "
              "--key or --wallet are required", file=sys.stderr)
        raise SystemExit(2)
    specs = parse_specs(args.prices, depth=args.depth, spread_bps=args.spread_bps, levels=args.levels)
    simulator = VenueSimulator(
        VenueState(specs, balance=args.balance, maker_fee=args.maker_fee, taker_fee=args.taker_fee),
        api_key=api_key or None, api_secret=api_secret or None, wallets=wallets, weight_limit=args.weight_limit,
        order_limit=args.order_limit, chain_id=args.chain_id, listen_key_ttl=args.listen_key_ttl,
    )
    for key, secret, account in keys:
        simulator.add_api_key(key, secret, account)
    runner = web.AppRunner(build_app(simulator), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    try:
        await site.start()
    except OSError as error:
        print(f"venue-sim: cannot bind {args.host}:{args.port} ({error.strerror})", file=sys.stderr)
        await runner.cleanup()
        raise SystemExit(2) from None
    port = runner.addresses[0][1]
    print(f"venue-sim listening on {args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()
    print("venue-sim stopped", flush=True)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C (``tessera venue-sim`` calls this too)."""
    try:
        asyncio.run(serve(args))
    except ValueError as error:
        print(f"venue-sim: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
