"""The repositories of the store, one module each; imported from here."""

from .anomalies import AnomalyRepository
from .order_managers import OrderManagerRepository
from .orders import OrderRepository
from .trades import TradeRepository
from .trading_state import GLOBAL_SCOPE, TradingStateRepository

__all__ = [
    "AnomalyRepository",
    "GLOBAL_SCOPE",
    "OrderManagerRepository",
    "OrderRepository",
    "TradeRepository",
    "TradingStateRepository",
]
