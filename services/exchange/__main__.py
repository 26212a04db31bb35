"""``python -m services.exchange``: the Exchange service (paper mode)."""

from __future__ import annotations

import os
from typing import Mapping

from services.common.config import (
    ConfigError,
    ServerConfig,
    env_decimal,
    env_int,
    env_prices,
    exit_on_config_error,
    load_keyring,
)
from services.common.server import run, serve
from services.risk.limits import DEFAULT_PRICES
from tessera.exchange.v1 import exchange_pb2, exchange_pb2_grpc

from .engine import ExchangeEngine
from .providers.paper import PaperFees, PaperProvider
from .servicer import ExchangeServicer

MODES = ("paper", "shadow", "live")


def make_provider(environ: Mapping[str, str]) -> PaperProvider:
    mode = (environ.get("TESSERA_EXECUTION_MODE", "") or "paper").lower()
    if mode not in MODES:
        raise ConfigError(f"TESSERA_EXECUTION_MODE must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "live":
        if environ.get("AIS_ENABLE_LIVE_TRADING", "").lower() != "true":
            raise ConfigError("live mode needs AIS_ENABLE_LIVE_TRADING=true")
        if not environ.get("ASTER_ACCOUNT_ID"):
            raise ConfigError("live mode needs ASTER_ACCOUNT_ID")
    if mode != "paper":
        raise ConfigError(f"TESSERA_EXECUTION_MODE={mode} is not available in this build; use paper")
    fees = PaperFees(
        maker=env_decimal(environ, "TESSERA_PAPER_MAKER_FEE", "0.0002"),
        taker=env_decimal(environ, "TESSERA_PAPER_TAKER_FEE", "0.0004"),
    )
    return PaperProvider(env_prices(environ, "TESSERA_PRICES", DEFAULT_PRICES), fees)


async def main() -> None:
    try:
        keyring = load_keyring(os.environ)
        provider = make_provider(os.environ)
        ttl = env_int(os.environ, "TESSERA_TOKEN_TTL_SECONDS", 300, minimum=1)
        server_config = ServerConfig.from_env("exchange")
    except ConfigError as error:
        exit_on_config_error("exchange", error)
    engine = ExchangeEngine(keyring, provider, ttl_seconds=ttl)

    def register(server):  # type: ignore[no-untyped-def]
        exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(ExchangeServicer(engine), server)
        return [exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name]

    await serve(
        "exchange",
        register,
        host=server_config.host,
        port=server_config.port,
        on_started=engine.start,
        on_stopping=engine.close,
    )


if __name__ == "__main__":
    run(main)
