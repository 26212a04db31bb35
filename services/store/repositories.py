"""The repositories of the store, one module each; imported from here."""

from .account_activity import AccountActivityRepository
from .anomalies import AnomalyRepository
from .order_managers import OrderManagerRepository
from .orders import OrderRepository
from .positions import PositionRepository
from .trades import TradeRepository
from .trading_state import GLOBAL_SCOPE, TradingStateRepository, symbol_scope

__all__ = [
    "AccountActivityRepository",
    "AnomalyRepository",
    "GLOBAL_SCOPE",
    "OrderManagerRepository",
    "OrderRepository",
    "PositionRepository",
    "TradeRepository",
    "TradingStateRepository",
    "symbol_scope",
]
