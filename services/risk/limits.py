"""Pre-trade risk limits, read from the environment (see the README's table)."""

from __future__ import annotations

import dataclasses
import os
from decimal import Decimal
from typing import Mapping

from services.common.config import ConfigError, env_decimal, env_prices

DEFAULT_SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT"
DEFAULT_PRICES = "BTCUSDT=65000,ETHUSDT=3200,SOLUSDT=150"


@dataclasses.dataclass(frozen=True)
class RiskLimits:
    allowed_symbols: frozenset[str]
    max_notional_per_order: Decimal
    max_quantity_per_order: Decimal
    max_price: Decimal
    reference_prices: Mapping[str, Decimal]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "RiskLimits":
        symbols = environ.get("TESSERA_RISK_ALLOWED_SYMBOLS", "") or DEFAULT_SYMBOLS
        allowed = frozenset(s.strip().upper() for s in symbols.split(",") if s.strip())
        if not allowed:
            raise ConfigError("TESSERA_RISK_ALLOWED_SYMBOLS must name at least one symbol")
        return cls(
            allowed_symbols=allowed,
            max_notional_per_order=env_decimal(environ, "TESSERA_RISK_MAX_NOTIONAL", "250000"),
            max_quantity_per_order=env_decimal(environ, "TESSERA_RISK_MAX_QUANTITY", "1000000"),
            max_price=env_decimal(environ, "TESSERA_RISK_MAX_PRICE", "10000000"),
            reference_prices=env_prices(environ, "TESSERA_PRICES", DEFAULT_PRICES),
        )

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, value, violation code) of every control, for GetLimits."""
        return [
            ("allowed_symbols", ",".join(sorted(self.allowed_symbols)), "SYMBOL_NOT_ALLOWED"),
            ("max_notional_per_order", str(self.max_notional_per_order), "MAX_NOTIONAL_EXCEEDED"),
            ("max_quantity_per_order", str(self.max_quantity_per_order), "MAX_QUANTITY_EXCEEDED"),
            ("max_price", str(self.max_price), "PRICE_OUT_OF_RANGE"),
            ("trading_state", "HALTED refuses every new order", "TRADING_HALTED"),
        ]
