"""Store errors: each is a domain error, so the services map them to gRPC statuses."""

from __future__ import annotations

from services.domain.errors import Conflict, InvalidOrder, OrderNotFound


class DuplicateClientOrderId(Conflict):
    """The account already has an order with this client order id (ALREADY_EXISTS).

    The existing order is still readable in the same unit of work, with
    ``OrderRepository.get_by_client_order_id``, e.g. to tell a retry from a conflict.
    """

    reason = "DUPLICATE_CLIENT_ORDER_ID"

    def __init__(self, account: str, client_order_id: str) -> None:
        super().__init__(f"account {account!r} already has client order id {client_order_id!r}",
                         metadata={"account": account, "client_order_id": client_order_id})
        self.account = account
        self.client_order_id = client_order_id


class DuplicateOrderId(Conflict):
    """An order with this order id exists already."""

    reason = "DUPLICATE_ORDER_ID"

    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} exists already", metadata={"order_id": order_id})
        self.order_id = order_id


class OrderManagerNotFound(OrderNotFound):
    reason = "ORDER_MANAGER_NOT_FOUND"


class InvalidPage(InvalidOrder):
    """A malformed pagination cursor or limit (INVALID_ARGUMENT)."""
