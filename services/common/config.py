"""Configuration from the environment (docs/configuration.md lists every variable).

A service that cannot start safely (no usable HMAC secret, a bad port) exits at once
with a message naming the variable; no secret value ever appears in that message.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from decimal import Decimal, InvalidOperation
from typing import Mapping, NoReturn

import core_ext

DEFAULT_PORTS = {"risk": 50051, "oms": 50052, "exchange": 50053}


class ConfigError(ValueError):
    """A configuration variable is missing or unusable; the message names it."""


def env_int(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_decimal(environ: Mapping[str, str], name: str, default: str) -> Decimal:
    raw = environ.get(name, "") or default
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ConfigError(f"{name} must be a decimal number, got {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{name} must be a non-negative decimal number, got {raw!r}")
    return value


def env_prices(environ: Mapping[str, str], name: str, default: str) -> dict[str, Decimal]:
    """``BTCUSDT=65000,ETHUSDT=3200`` into a price map."""
    raw = environ.get(name, "") or default
    prices: dict[str, Decimal] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        symbol, _, price = item.partition("=")
        symbol = symbol.strip().upper()
        if not symbol:
            raise ConfigError(f"{name}: {item!r} names no symbol (expected SYMBOL=PRICE)")
        try:
            value = Decimal(price)
        except InvalidOperation:
            raise ConfigError(f"{name}: price of {symbol!r} is not a decimal: {price!r}") from None
        if not value.is_finite() or value <= 0:
            raise ConfigError(f"{name}: price of {symbol!r} must be positive")
        prices[symbol] = value
    return prices


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int

    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str] = os.environ) -> "ServerConfig":
        return cls(
            host=environ.get("TESSERA_HOST", "127.0.0.1"),
            port=env_int(environ, f"TESSERA_{service.upper()}_PORT", DEFAULT_PORTS[service]),
        )


def load_keyring(environ: Mapping[str, str] = os.environ) -> "core_ext.KeyRing":
    """The HMAC key ring, or :class:`ConfigError` naming the variable at fault."""
    try:
        return core_ext.KeyRing.from_env(environ)
    except core_ext.KeyConfigError as error:
        raise ConfigError(str(error)) from None


def exit_on_config_error(service: str, error: ConfigError) -> NoReturn:
    print(f"tessera-{service}: configuration error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2)
