"""``python -m services.exchange``: the Exchange service, in paper, shadow or live mode.

The mode and its gates are checked before the server starts; a mode that cannot run
safely stops the service with a message naming every missing variable (never a value).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Mapping
from urllib.parse import urlparse

from core_ext.errors import KeyConfigError
from core_ext.keys import read_variable
from services.common.config import (
    ConfigError,
    ServerConfig,
    env_decimal,
    env_int,
    env_prices,
    exit_on_config_error,
    load_keyring,
)
from services.common.observability import metrics
from services.common.server import add_service, run, serve
from services.risk.limits import DEFAULT_PRICES
from services.store.database import Database
from services.store.engine import database_url
from services.store.risk_state import held_positions
from tessera.exchange.v1 import exchange_pb2

from services.common.venue_accounts import VARIABLE, RegistryError, VenueAccounts, reload_seconds

from .aster.credentials import credentials_from_environ, credentials_from_mapping, missing_variables
from .aster.transport import AsterTransport
from .engine import ExchangeEngine, StoreExecutions
from .providers.books import BookShape, PriceSource, RandomWalkPrices, RecordedPrices, StaticPrices
from .providers.live import LiveProvider
from .providers.paper import PaperFees, PaperProvider
from .providers.shadow import ShadowProvider
from .providers.simulated import SimulatedVenue
from .servicer import RAW_REQUESTS, ExchangeServicer
from .venue import Provider

MODES = ("paper", "shadow", "live")
PRICE_SOURCES = ("static", "random_walk", "file")
#: The longest the start waits for the venue's settings (TESSERA_VENUE_SETTINGS_SYMBOLS).
SETTINGS_TIMEOUT_SECONDS = 15.0
log = logging.getLogger("services.exchange")
ASTER_FUTURES_URL = "https://fapi.asterdex.com"
ASTER_SPOT_URL = "https://sapi.asterdex.com"


def _seconds(environ: Mapping[str, str], name: str, default: str) -> float:
    return float(env_decimal(environ, name, default))


def _url(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, "") or environ.get("TESSERA_VENUE_URL", "") or default
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL")
    return value


VENUE_SECRETS = ("ASTER_API_KEY", "ASTER_API_SECRET", "ASTER_SIGNER_PRIVATE_KEY")


def with_venue_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with the venue credentials read from ``ASTER_API_KEY``/``ASTER_API_SECRET``
    (V1) or ``ASTER_SIGNER_PRIVATE_KEY`` (V3), or from the files their ``_FILE`` variants
    name (one trailing newline dropped; both forms set is an error), as the HMAC secrets are."""
    resolved = dict(environ)
    for name in VENUE_SECRETS:
        try:
            value, source = read_variable(environ, name)
        except KeyConfigError as error:
            raise ConfigError(str(error)) from None
        if value is not None and value.strip() != value:
            raise ConfigError(f"{source} has leading or trailing whitespace")
        resolved[name] = value or ""
    return resolved


def make_transport(environ: Mapping[str, str], *, public_only: bool,
                   registry: bool = False) -> AsterTransport:
    """The venue connection: ``TESSERA_VENUE_URL`` (both markets) or the two Aster URLs.
    With a venue accounts ``registry`` the transport has no credentials of its own: each
    request is signed with its account's."""
    credentials = None
    if not public_only and not registry:
        try:
            credentials = credentials_from_environ(environ)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    recv_window = env_int(environ, "ASTER_RECV_WINDOW_MS", 5000, minimum=1)
    if recv_window > 60_000:
        raise ConfigError("ASTER_RECV_WINDOW_MS must not exceed 60000 (the venue's limit)")
    return AsterTransport(
        futures_url=_url(environ, "ASTER_FUTURES_URL", ASTER_FUTURES_URL),
        spot_url=_url(environ, "ASTER_SPOT_URL", ASTER_SPOT_URL),
        credentials=credentials,
        recv_window_ms=recv_window,
        timeout_seconds=_seconds(environ, "TESSERA_VENUE_TIMEOUT_SECONDS", "10"),
        weight_limit=env_int(environ, "ASTER_WEIGHT_LIMIT", 2400, minimum=10),
        public_only=public_only,
    )


def live_gate(environ: Mapping[str, str], *, registry: bool = False) -> None:
    """Every live-mode gate at once: the message names each one that is missing. With a
    venue accounts registry, the credentials come from it (not the environment)."""
    missing = []
    if environ.get("AIS_ENABLE_LIVE_TRADING", "").lower() != "true":
        missing.append("AIS_ENABLE_LIVE_TRADING=true")
    if registry:
        if missing:
            raise ConfigError(f"live mode needs {', '.join(missing)}")
        return
    if not environ.get("ASTER_ACCOUNT_ID"):
        missing.append("ASTER_ACCOUNT_ID")
    missing += missing_variables(environ)  # V1 key and secret, or the V3 API wallet
    if missing:
        raise ConfigError(f"live mode needs {', '.join(missing)}")


def paper_prices(environ: Mapping[str, str]) -> PriceSource:
    kind = (environ.get("TESSERA_PAPER_PRICE_SOURCE", "") or "static").lower()
    if kind not in PRICE_SOURCES:
        raise ConfigError(f"TESSERA_PAPER_PRICE_SOURCE must be one of {', '.join(PRICE_SOURCES)}, got {kind!r}")
    prices = env_prices(environ, "TESSERA_PRICES", DEFAULT_PRICES)
    if kind == "static":
        return StaticPrices(prices)
    if kind == "random_walk":
        return RandomWalkPrices(
            prices,
            seed=env_int(environ, "TESSERA_PAPER_SEED", 1),
            volatility=env_decimal(environ, "TESSERA_PAPER_VOLATILITY", "0.001"),
        )
    path = environ.get("TESSERA_PAPER_PRICE_FILE", "")
    if not path:
        raise ConfigError("TESSERA_PAPER_PRICE_SOURCE=file needs TESSERA_PAPER_PRICE_FILE")
    try:
        return RecordedPrices.from_file(path)
    except (OSError, ValueError, ArithmeticError) as error:
        raise ConfigError(f"TESSERA_PAPER_PRICE_FILE cannot be read as recorded prices ({type(error).__name__})") from None


def make_paper(environ: Mapping[str, str]) -> PaperProvider:
    fees = PaperFees(
        maker=env_decimal(environ, "TESSERA_PAPER_MAKER_FEE", "0.0002"),
        taker=env_decimal(environ, "TESSERA_PAPER_TAKER_FEE", "0.0004"),
    )
    level_quantity = env_decimal(environ, "TESSERA_PAPER_LEVEL_QUANTITY", "0")
    shape = BookShape(
        spread_bps=env_decimal(environ, "TESSERA_PAPER_SPREAD_BPS", "0"),
        levels=env_int(environ, "TESSERA_PAPER_BOOK_LEVELS", 1, minimum=1),
        level_quantity=level_quantity if level_quantity > 0 else None,
        level_step_bps=env_decimal(environ, "TESSERA_PAPER_LEVEL_STEP_BPS", "1"),
    )
    source = paper_prices(environ)
    moving = type(source) is not StaticPrices  # a walk or a recording: prices need ticks
    return PaperProvider(
        source,
        fees,
        shape=shape,
        latency_seconds=env_int(environ, "TESSERA_PAPER_LATENCY_MS", 0) / 1000,
        tick_seconds=_seconds(environ, "TESSERA_PAPER_TICK_SECONDS", "1" if moving else "0"),
    )


def make_provider(environ: Mapping[str, str]) -> Provider:
    environ = with_venue_secrets(environ)
    mode = (environ.get("TESSERA_EXECUTION_MODE", "") or "paper").lower()
    if mode not in MODES:
        raise ConfigError(f"TESSERA_EXECUTION_MODE must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "paper":
        return make_paper(environ)
    poll = _seconds(environ, "TESSERA_VENUE_POLL_SECONDS", "1")
    if mode == "shadow":
        fees = PaperFees(
            maker=env_decimal(environ, "TESSERA_PAPER_MAKER_FEE", "0.0002"),
            taker=env_decimal(environ, "TESSERA_PAPER_TAKER_FEE", "0.0004"),
        )
        return ShadowProvider(make_transport(environ, public_only=True), fees, poll_seconds=poll)
    try:
        accounts = VenueAccounts.from_environ(environ, credentials=credentials_from_mapping)
    except RegistryError as error:
        raise ConfigError(str(error)) from None
    live_gate(environ, registry=accounts is not None)
    if accounts is not None and not accounts.accounts:
        raise ConfigError(f"{VARIABLE} holds no account")
    user_stream = (environ.get("TESSERA_VENUE_USER_STREAM", "") or "true").lower()
    if user_stream not in ("true", "false"):
        raise ConfigError("TESSERA_VENUE_USER_STREAM must be true or false")
    deadman = _seconds(environ, "TESSERA_VENUE_DEADMAN_SECONDS", "120")
    if deadman < 0 or 0 < deadman < 5:
        raise ConfigError("TESSERA_VENUE_DEADMAN_SECONDS must be 0 (off) or at least 5")
    return LiveProvider(make_transport(environ, public_only=False, registry=accounts is not None), poll_seconds=poll,
                        user_stream=user_stream == "true", accounts=accounts, deadman_seconds=deadman,
                        round_prices=False,  # an off-tick price is refused: the stored price is the price sent
                        account_id=None if accounts is not None else environ["ASTER_ACCOUNT_ID"])


def settings_symbols(environ: Mapping[str, str]) -> list[str]:
    """``TESSERA_VENUE_SETTINGS_SYMBOLS``: the symbols (comma-separated) a live Exchange
    must find set at the venue before it serves: the venue's settings are read then (every
    symbol's, once), and a named symbol without a leverage or a margin mode is logged."""
    symbols = [item.strip().upper() for item in environ.get("TESSERA_VENUE_SETTINGS_SYMBOLS", "").split(",")]
    bad = [symbol for symbol in symbols if symbol and not symbol.isalnum()]
    if bad:
        raise ConfigError(f"TESSERA_VENUE_SETTINGS_SYMBOLS: not a symbol: {', '.join(bad)}")
    return [symbol for symbol in symbols if symbol]


async def restore_settings(provider: Provider, symbols: list[str]) -> None:
    """Live mode, before serving: the venue's settings, every symbol's (a restarted Exchange
    then takes their orders at once), and a warning for each of ``symbols`` the venue has
    no leverage or margin mode for. A venue that does not answer leaves them unread: the
    provider's start and then the account's first order read them again."""
    if not symbols or not isinstance(provider, LiveProvider):
        return
    try:
        missing = await asyncio.wait_for(provider.restore_settings(symbols), SETTINGS_TIMEOUT_SECONDS)
    except Exception as error:  # noqa: BLE001 - the service starts; the start reads them again
        log.warning("could not read the venue's settings before serving (%s): they are read again as the Exchange "
                    "starts, and at an account's next order", error or type(error).__name__)
        return
    if missing:
        log.warning("the venue has no leverage or margin mode for %s: their orders are refused until SetLeverage "
                    "and SetMarginMode", ", ".join(missing))
    log.info("the venue's settings read before serving (named: %s)", ", ".join(symbols))


async def hold_ledger_positions(provider: Provider, db: Database) -> None:
    """Paper and shadow mode, before serving: the simulated venue holds the store's open
    positions (the ledger's, and the fills Risk has not taken into it yet), so a
    close-position order after a restart closes what was filled before it (the venue's
    own memory starts empty). A store that does not answer leaves it holding nothing."""
    if not isinstance(provider, SimulatedVenue):
        return
    codec = db.codec
    try:
        held = await db.read(lambda uow: held_positions(uow.session.connection(), codec))
    except Exception as error:  # noqa: BLE001 - the service starts; close-position orders find nothing held
        log.warning("could not read the open positions from the store (%s): a close-position order closes only "
                    "what this Exchange fills from now on", type(error).__name__)
        return
    provider.hold(held)
    if held:
        log.info("the simulated venue holds the store's %d open positions", len(held))


async def main() -> None:
    try:
        keyring = load_keyring(os.environ)
        provider = make_provider(os.environ)
        symbols = settings_symbols(os.environ)
        ttl = env_int(os.environ, "TESSERA_TOKEN_TTL_SECONDS", 300, minimum=1)
        server_config = ServerConfig.from_env("exchange")
        reload = reload_seconds(os.environ)
    except RegistryError as error:
        exit_on_config_error("exchange", ConfigError(str(error)))
    except ConfigError as error:
        exit_on_config_error("exchange", error)
    await restore_settings(provider, symbols)  # before serving: no order arrives to find them unset
    # Every execution is recorded in the store before the provider is called: an order is
    # executed once, whatever this process forgets (a restart).
    db = Database.from_url(database_url(), on_commit=metrics.store_committed)
    engine = ExchangeEngine(keyring, provider, ttl_seconds=ttl, executions=StoreExecutions(db))
    await hold_ledger_positions(provider, db)

    def register(server):  # type: ignore[no-untyped-def]
        return [add_service(server, ExchangeServicer(engine), exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"],
                            raw_requests=RAW_REQUESTS)]

    accounts = getattr(provider, "accounts", None)
    watcher: list[asyncio.Task[None]] = []

    async def started() -> None:
        await engine.start()
        if accounts is not None:  # the registry reloaded when it changes (a key rotated, an account added)
            watcher.append(asyncio.create_task(accounts.watch(reload), name="venue-accounts"))

    async def stopping() -> None:
        for task in watcher:
            task.cancel()
        await engine.close()
        db.close()

    # Credentials issued before the engine was made are refused (a restart forgets the
    # replay cache): serve from the first whole second after it.
    await engine.accepting_credentials()
    await serve(
        "exchange",
        register,
        host=server_config.host,
        port=server_config.port,
        on_started=started,
        on_stopping=stopping,
    )


if __name__ == "__main__":
    run(main)
