"""``python -m services.risk``: the Risk service (one replica of it)."""

from __future__ import annotations

import asyncio
import contextlib
import os

from services.common.config import ConfigError, ServerConfig, env_decimal, exit_on_config_error, load_keyring
from services.common.observability import metrics
from services.common.server import add_service, run, serve
from services.common.venue_accounts import RegistryError, VenueAccounts, reload_seconds
from services.store import database_url
from services.store.database import Database
from tessera.risk.v1 import risk_pb2

from .engine import RiskEngine
from .limits import RiskLimits
from .servicer import RiskServicer
from .sharding import Sharding, check_forwarding_identity


async def main() -> None:
    try:
        keyring = load_keyring(os.environ)
        limits = RiskLimits.from_env(os.environ)
        server_config = ServerConfig.from_env("risk")
        sharding = Sharding.from_env(os.environ)
        check_forwarding_identity(os.environ, sharding)
        poll = float(env_decimal(os.environ, "TESSERA_RISK_POLL_SECONDS", "0.1"))
        state_poll = float(env_decimal(os.environ, "TESSERA_RISK_STATE_POLL_SECONDS", "0.1"))
        lease = float(env_decimal(os.environ, "TESSERA_RISK_LEASE_SECONDS", "10"))
        if poll <= 0 or state_poll <= 0 or lease <= 0:
            raise ConfigError("TESSERA_RISK_POLL_SECONDS, TESSERA_RISK_STATE_POLL_SECONDS and "
                              "TESSERA_RISK_LEASE_SECONDS must be positive")
        try:  # Risk reads who trades where, never the credentials (live with ASTER_ACCOUNT_ID: that one)
            accounts = VenueAccounts.from_environ(os.environ, single_account=True)
            reload = reload_seconds(os.environ)
        except RegistryError as error:
            raise ConfigError(str(error)) from None
    except ConfigError as error:
        exit_on_config_error("risk", error)
    db = Database.from_url(database_url(), on_events=metrics.events_committed,
                            on_commit=metrics.store_committed)
    engine = RiskEngine(db, keyring, limits, sharding=sharding, poll_seconds=poll, state_poll_seconds=state_poll,
                        accounts=accounts, lease_seconds=lease)
    servicer = RiskServicer(engine, sharding)
    metrics.watch_trading_state(db.store)
    metrics.watch_risk_book(engine.book, sharding.shard, sharding.shards)
    stop = asyncio.Event()
    background: list[asyncio.Task[None]] = []

    def register(server):  # type: ignore[no-untyped-def]
        return [add_service(server, servicer, risk_pb2.DESCRIPTOR.services_by_name["RiskService"])]

    async def started() -> None:
        await engine.start()  # the book, before the first decision
        background.append(asyncio.create_task(engine.follow(stop), name="risk-book"))
        if accounts is not None and accounts.path is not None:
            background.append(asyncio.create_task(accounts.watch(reload, stop), name="venue-accounts"))

    async def stopping() -> None:
        stop.set()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        await serve("risk", register, host=server_config.host, port=server_config.port,
                    on_started=started, on_stopping=stopping)
    finally:
        await servicer.close()
        db.close()


if __name__ == "__main__":
    run(main)
