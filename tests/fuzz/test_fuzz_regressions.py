"""Inputs the fuzzer found, kept as plain tests so they run on every commit.

Each was once answered INTERNAL ("internal error", a traceback in the log): a
Timestamp outside its range (seconds past 9999-12-31, or nanos of a second or more) in
an order's ``expire_time`` or a batch's ``target_time`` made ``ToDatetime`` raise. It is
an invalid argument like any other.
"""

from __future__ import annotations

import grpc
import pytest
import tessera_e2e as e2e
from google.protobuf import timestamp_pb2

from services.common import convert
from services.domain.errors import InvalidOrder
from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

OUT_OF_RANGE = [
    timestamp_pb2.Timestamp(seconds=253402300800),  # 10000-01-01
    timestamp_pb2.Timestamp(seconds=-62135596801),  # before year 1
    timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=10**9),
    timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=-1),
]


@pytest.mark.parametrize("stamp", OUT_OF_RANGE, ids=["year-10000", "year-0", "nanos-1e9", "nanos-negative"])
def test_an_out_of_range_timestamp_is_an_invalid_argument(stamp):
    intent = pb.OrderIntent(account="a1", venue="aster", market_type=pb.MARKET_TYPE_FUTURES, symbol="BTCUSDT",
                            side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_MARKET, quantity="0.01")
    intent.expire_time.CopyFrom(stamp)
    request = oms_pb2.CreateOrderManagerRequest(unique_identifier="b1", target_account_uid="a1")
    request.target_time.CopyFrom(stamp)

    for message, name in ((intent, "expire_time"), (request, "target_time")):
        with pytest.raises(InvalidOrder) as raised:
            convert.timestamp_from_proto(message, name)
        assert raised.value.field == name


def test_the_services_answer_invalid_argument_for_it(stack):
    intent = e2e.intent()
    intent.expire_time.CopyFrom(OUT_OF_RANGE[0])

    e2e.expect_error(lambda: stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=intent),
                                                      timeout=e2e.RPC_TIMEOUT),
                     grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    manager = oms_pb2.CreateOrderManagerRequest(unique_identifier="fuzz-b1", target_account_uid="a1")
    manager.target_time.CopyFrom(OUT_OF_RANGE[2])
    e2e.expect_error(lambda: stack.oms.CreateOrderManager(manager, timeout=e2e.RPC_TIMEOUT),
                     grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
