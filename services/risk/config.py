"""Where pre-trade risk settings come from: the environment and an optional file.

Every setting has one key. In the file (``TESSERA_RISK_CONFIG_FILE``: TOML, or JSON
for a ``.json`` name) the key is written as is (``max_notional = 250000``); in the
environment it is ``TESSERA_RISK_`` + the key in capitals (``TESSERA_RISK_MAX_NOTIONAL``).
The environment overrides the file; an empty variable counts as unset. Numbers in the
file are read as exact decimals (TOML and JSON floats included), never as binary floats.
Every error names the variable, or the key and the file, at fault.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

from services.common.config import ConfigError

ENV_PREFIX = "TESSERA_RISK_"
CONFIG_FILE_VARIABLE = "TESSERA_RISK_CONFIG_FILE"
OFF = "off"
#: A time of day as the settings write it: ``HH:MM`` or ``HH:MM:SS``, nothing else.
_TIME_OF_DAY = re.compile(r"[0-9]{2}:[0-9]{2}(:[0-9]{2})?")


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


class SettingSources:
    """The raw value of each key, and a label naming where it came from."""

    def __init__(self, environ: Mapping[str, str], known_keys: frozenset[str]) -> None:
        self.environ = environ
        self.file_path = environ.get(CONFIG_FILE_VARIABLE, "").strip()
        self.file_values = load_file(Path(self.file_path), known_keys) if self.file_path else {}

    def raw(self, key: str) -> tuple[Any, str] | None:
        """``(value, where)``, the environment first; None when neither sets it."""
        value = self.environ.get(env_name(key), "")
        if value.strip():
            return value.strip(), env_name(key)
        if key in self.file_values:
            return self.file_values[key], f"{key} in {self.file_path}"
        return None


def load_file(path: Path, known_keys: frozenset[str]) -> dict[str, Any]:
    """The settings in a TOML or JSON file (top-level keys).

    Raises
    ------
    ConfigError
        The file cannot be read or parsed, is not a table of settings, or names a key
        that is not a setting (a typo must not silently leave a control at its default).
    """
    where = f"{CONFIG_FILE_VARIABLE}={path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{where}: cannot read the file ({error.strerror or error})") from None
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text, parse_float=Decimal)
        else:
            values = tomllib.loads(text, parse_float=Decimal)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{where}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table of settings at the top level")
    unknown = sorted(set(values) - known_keys)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known_keys))}")
    return values


# -- parsers: (raw value, where) -> value; each raises ConfigError naming ``where`` -----------
def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ConfigError(f"{where} must be a decimal number, got {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ConfigError(f"{where} must be a decimal number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ConfigError(f"{where} must be a non-negative decimal number, got {value!r}")
    return number


def _is_off(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == OFF


def decimal_limit(value: Any, where: str) -> Decimal | None:
    """A non-negative decimal, or ``"off"`` (None: the control is disabled).

    Raises
    ------
    ConfigError
        Anything else; the message names ``where``.
    """
    return None if _is_off(value) else _decimal(value, where)


def positive_decimal(value: Any, where: str) -> Decimal:
    """A decimal above zero (``off`` is not allowed).

    Raises
    ------
    ConfigError
        Anything else; the message names ``where``.
    """
    number = _decimal(value, where)
    if number == 0:
        raise ConfigError(f"{where} must be positive, got {value!r}")
    return number


def count_limit(value: Any, where: str) -> int | None:
    """A whole number of at least 1, or ``"off"``.

    Raises
    ------
    ConfigError
        Anything else; the message names ``where``.
    """
    return None if _is_off(value) else positive_integer(value, where)


def positive_integer(value: Any, where: str) -> int:
    """A whole number of at least 1 (``off`` is not allowed).

    Raises
    ------
    ConfigError
        Anything else; the message names ``where``.
    """
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is None or not text.isdecimal() or int(text) < 1:
        raise ConfigError(f"{where} must be a whole number of at least 1, got {value!r}")
    return int(text)


def fraction_limit(value: Any, where: str) -> Decimal | None:
    """A fraction such as ``0.05`` (5 %), or ``"off"``.

    Raises
    ------
    ConfigError
        Not above 0 and below 1; the message names ``where``.
    """
    if _is_off(value):
        return None
    number = _decimal(value, where)
    if number == 0 or number >= 1:
        raise ConfigError(f"{where} must be a fraction above 0 and below 1 (0.05 is 5%), got {value!r}")
    return number


def symbol_set(value: Any, where: str) -> frozenset[str]:
    """A comma-separated string or a list of symbols, upper-cased.

    Raises
    ------
    ConfigError
        Not a list of strings, or no symbol at all; the message names ``where``.
    """
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else None
    if items is None or not all(isinstance(item, str) for item in items):
        raise ConfigError(f"{where} must list symbols (a comma-separated string or a list), got {value!r}")
    symbols = frozenset(item.strip().upper() for item in items if item.strip())
    if not symbols:
        raise ConfigError(f"{where} must name at least one symbol")
    return symbols


def utc_time_of_day(value: Any, where: str) -> dt.time:
    """``HH:MM`` or ``HH:MM:SS``, a time of day in UTC.

    Raises
    ------
    ConfigError
        Anything else (an offset included: the time is UTC by definition; ``12.30``,
        which Python's parser reads as 12:00:00.3); the message names ``where``.
    """
    try:
        matches = isinstance(value, str) and _TIME_OF_DAY.fullmatch(value) is not None
        parsed = dt.time.fromisoformat(value) if matches else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is not None:
        raise ConfigError(f"{where} must be a UTC time of day as HH:MM, got {value!r}")
    return parsed.replace(tzinfo=dt.timezone.utc)
