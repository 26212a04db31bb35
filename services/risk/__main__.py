"""``python -m services.risk``: the Risk service."""

from __future__ import annotations

import os

from services.common.config import ConfigError, ServerConfig, exit_on_config_error, load_keyring
from services.common.db import Database
from services.common.observability import metrics
from services.common.server import run, serve
from services.store import database_url
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

from .engine import RiskEngine
from .limits import RiskLimits
from .servicer import RiskServicer


async def main() -> None:
    try:
        keyring = load_keyring(os.environ)
        limits = RiskLimits.from_env(os.environ)
        server_config = ServerConfig.from_env("risk")
    except ConfigError as error:
        exit_on_config_error("risk", error)
    db = Database.from_url(database_url())
    engine = RiskEngine(db, keyring, limits)
    metrics.watch_trading_state(db.store)

    def register(server):  # type: ignore[no-untyped-def]
        risk_pb2_grpc.add_RiskServiceServicer_to_server(RiskServicer(engine), server)
        return [risk_pb2.DESCRIPTOR.services_by_name["RiskService"].full_name]

    try:
        await serve("risk", register, host=server_config.host, port=server_config.port)
    finally:
        db.close()


if __name__ == "__main__":
    run(main)
