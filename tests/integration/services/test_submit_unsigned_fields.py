"""SubmitOrder with fields the risk token does not sign: each one set must be the approved
order's. One that disagrees is refused INVALID_ARGUMENT (``DIFFERS_FROM_APPROVED``,
naming it), never ignored, and the store is left as it was; unset, or as Risk answered
it, the order goes."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any, Callable

import grpc
import pytest

from services.common import convert
from services.common.errors import explain
from services.domain import OrderStatus
from services.domain.errors import InvalidOrder
from svc_harness import approved
from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2

LATER = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def _set(name: str, value: Any) -> Callable[[pb.Order], None]:
    def change(message: pb.Order) -> None:
        if name in ("expire_time", "order_time"):
            getattr(message, name).FromDatetime(value)
        elif name == "reject_reasons":
            message.reject_reasons.append(value)
        else:
            setattr(message, name, value)
    return change


DISAGREEING = {
    "order_manager_id": _set("order_manager_id", "another-batch"),
    "expire_time": _set("expire_time", LATER),
    "order_time": _set("order_time", LATER),
    "status": _set("status", pb.ORDER_STATUS_FILLED),
    "filled_quantity": _set("filled_quantity", "0.01"),
    "average_fill_price": _set("average_fill_price", "65000"),
    "remote_order_id": _set("remote_order_id", "venue-123"),
    "reject_reasons": _set("reject_reasons", "NOPE"),
    "replaced_by_order_id": _set("replaced_by_order_id", "other"),
}


def _stored(db: Any, order_id: str) -> tuple[Any, list[Any]]:
    async def read():
        return await db.read(lambda uow: (uow.orders.get(order_id), uow.orders.events(order_id)))
    return asyncio.run(read())


@pytest.mark.parametrize("field", list(DISAGREEING))
def test_a_disagreeing_unsigned_field_is_refused_naming_it_and_the_store_is_unchanged(
        db, risk, oms, exchange, make_order, field):
    decision = asyncio.run(approved(risk, make_order(quantity=Decimal("0.02"))))
    message = convert.order_to_proto(decision.order)  # the order as Risk answered it
    DISAGREEING[field](message)
    before = _stored(db, decision.order.order_id)

    request = oms_pb2.SubmitOrderRequest(order=message, risk_token=decision.token)
    with pytest.raises(InvalidOrder) as refused:
        asyncio.run(oms.submit_wire(request.SerializeToString()))

    assert [(v.field, v.reason) for v in refused.value.violations] == [(field, "DIFFERS_FROM_APPROVED")]
    assert explain(refused.value.prefixed("order")).code is grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.prefixed("order").violations[0].field == f"order.{field}"
    after = _stored(db, decision.order.order_id)
    assert after[0].status is OrderStatus.APPROVED
    assert (after[0].version, after[0].last_event_hash, len(after[1])) == (
        before[0].version, before[0].last_event_hash, len(before[1]))
    assert exchange.execute_requests == []

    # As Risk answered it, the same order and token go.
    untouched = oms_pb2.SubmitOrderRequest(order=convert.order_to_proto(decision.order), risk_token=decision.token)
    submission = asyncio.run(oms.submit_wire(untouched.SerializeToString()))
    assert submission.order.status is OrderStatus.FILLED


def test_unsigned_fields_left_unset_or_as_risk_answered_them_go(db, risk, oms, make_order):
    answered = asyncio.run(approved(risk, make_order(quantity=Decimal("0.02"))))
    bare = asyncio.run(approved(risk, make_order(quantity=Decimal("0.02"))))
    signed_only = convert.order_to_proto(bare.order)
    for name in ("order_manager_id", "expire_time", "status", "filled_quantity", "order_time", "updated_time",
                 "version"):  # the version too: the output-only fields a client may leave unset
        signed_only.ClearField(name)

    first = asyncio.run(oms.submit_wire(oms_pb2.SubmitOrderRequest(
        order=convert.order_to_proto(answered.order), risk_token=answered.token).SerializeToString()))
    second = asyncio.run(oms.submit_wire(oms_pb2.SubmitOrderRequest(
        order=signed_only, risk_token=bare.token).SerializeToString()))

    assert (first.order.status, second.order.status) == (OrderStatus.FILLED, OrderStatus.FILLED)
