"""Tessera's compiled hot path (risk token, order state machine, the order-event hash
chain) and its pure-Python twin.

Importing this package selects an implementation: the compiled Cython modules
(``_token_c``, ``_fsm_c``, ``_chain_c``) when they import, else the pure-Python twins
(``_token_py``, ``_fsm_py``, ``_chain_py``). ``TESSERA_PURE_PYTHON=1`` forces the twins.
``IMPLEMENTATION`` says which one is in use ("cython" or "python");
:func:`load_implementation` gives either one explicitly (tests run against both).
"""

from __future__ import annotations

import importlib
import os
import types

from core_ext._chain_py import CHAIN_VERSION
from core_ext.errors import CanonicalEncodingError, IllegalTransition, KeyConfigError
from core_ext.token_format import (
    BOOL_FIELDS,
    DECIMAL_FIELDS,
    DEFAULT_SKEW_SECONDS,
    DEFAULT_TTL_SECONDS,
    OK,
    OPTIONAL_FIELDS,
    REQUEST_INVALID,
    ORDER_FIELDS,
    REASONS,
    TOKEN_BAD_SIGNATURE,
    TOKEN_EXPIRED,
    TOKEN_FIELDS_CHANGED,
    TOKEN_MALFORMED,
    TOKEN_MISSING,
    TOKEN_NOT_YET_VALID,
    TOKEN_UNKNOWN_KEY,
)
from core_ext.transitions import ORDER_STATUSES, TERMINAL_STATUSES, TRANSITIONS

IMPLEMENTATIONS = ("cython", "python")
_MODULES = {
    "cython": ("core_ext._token_c", "core_ext._fsm_c", "core_ext._chain_c"),
    "python": ("core_ext._token_py", "core_ext._fsm_py", "core_ext._chain_py"),
}
#: Names each implementation provides (the public API that differs per twin).
IMPLEMENTED_NAMES = (
    "KeyRing",
    "VerifyResult",
    "canonical_decimal",
    "canonical_order_body",
    "sign_token",
    "verify_token",
    "verify_order_request",
    "verify_order_requests",
    "transition",
    "can_transition",
    "is_terminal",
    "canonical_event",
    "event_hash",
)


def load_implementation(name: str) -> types.SimpleNamespace:
    """Return one implementation's API as a namespace (attribute ``IMPLEMENTATION`` = name).

    Parameters
    ----------
    name : {"cython", "python"}

    Raises
    ------
    ValueError
        Unknown implementation name.
    ImportError
        The compiled modules are not built (``name == "cython"``).
    """
    if name not in _MODULES:
        raise ValueError(f"unknown implementation {name!r}; expected one of {IMPLEMENTATIONS}")
    token_module, fsm_module, chain_module = (importlib.import_module(m) for m in _MODULES[name])
    api = {attr: getattr(token_module, attr) for attr in IMPLEMENTED_NAMES if hasattr(token_module, attr)}
    api.update({attr: getattr(fsm_module, attr) for attr in ("transition", "can_transition", "is_terminal")})
    api.update({attr: getattr(chain_module, attr) for attr in ("canonical_event", "event_hash")})
    return types.SimpleNamespace(IMPLEMENTATION=name, **api)


def _select() -> types.SimpleNamespace:
    if os.environ.get("TESSERA_PURE_PYTHON") == "1":
        return load_implementation("python")
    try:
        return load_implementation("cython")
    except ImportError:
        return load_implementation("python")


_selected = _select()
IMPLEMENTATION: str = _selected.IMPLEMENTATION
KeyRing = _selected.KeyRing
VerifyResult = _selected.VerifyResult
canonical_decimal = _selected.canonical_decimal
canonical_order_body = _selected.canonical_order_body
sign_token = _selected.sign_token
verify_token = _selected.verify_token
verify_order_request = _selected.verify_order_request
verify_order_requests = _selected.verify_order_requests
transition = _selected.transition
can_transition = _selected.can_transition
is_terminal = _selected.is_terminal
canonical_event = _selected.canonical_event
event_hash = _selected.event_hash
del _selected

__all__ = [
    "BOOL_FIELDS",
    "CHAIN_VERSION",
    "CanonicalEncodingError",
    "DECIMAL_FIELDS",
    "DEFAULT_SKEW_SECONDS",
    "DEFAULT_TTL_SECONDS",
    "IMPLEMENTATION",
    "IMPLEMENTATIONS",
    "IllegalTransition",
    "KeyConfigError",
    "KeyRing",
    "OK",
    "OPTIONAL_FIELDS",
    "ORDER_FIELDS",
    "ORDER_STATUSES",
    "REASONS",
    "TERMINAL_STATUSES",
    "TOKEN_BAD_SIGNATURE",
    "TOKEN_EXPIRED",
    "TOKEN_FIELDS_CHANGED",
    "TOKEN_MALFORMED",
    "TOKEN_MISSING",
    "TOKEN_NOT_YET_VALID",
    "TOKEN_UNKNOWN_KEY",
    "TRANSITIONS",
    "REQUEST_INVALID",
    "VerifyResult",
    "can_transition",
    "canonical_decimal",
    "canonical_event",
    "canonical_order_body",
    "event_hash",
    "is_terminal",
    "load_implementation",
    "sign_token",
    "transition",
    "verify_order_request",
    "verify_order_requests",
    "verify_token",
]
