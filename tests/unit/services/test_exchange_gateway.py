"""The OMS's Exchange gateway: a refusal's reason comes from the structured
``google.rpc.ErrorInfo`` in the status trailers, never from the text; and the gateway is
the one module of the OMS that speaks ``exchange.v1``."""

from __future__ import annotations

import ast
import pathlib

import grpc

from services.common.errors import to_grpc_status
from services.oms.gateway import Refusal, reason_of, refusal_of

OMS = pathlib.Path(__file__).resolve().parents[3] / "services" / "oms"


def _error(code: grpc.StatusCode, details: str, trailing: tuple = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details)


def test_the_reason_is_the_error_infos_even_when_the_text_names_another():
    trailing = tuple(to_grpc_status(grpc.StatusCode.FAILED_PRECONDITION, "VENUE_RULE", "x").trailing_metadata)
    error = _error(grpc.StatusCode.FAILED_PRECONDITION, "TOKEN_EXPIRED: text that looks like a reason", trailing)

    refusal = refusal_of(error)

    assert reason_of(error) == "VENUE_RULE"
    assert refusal == Refusal(grpc.StatusCode.FAILED_PRECONDITION, "VENUE_RULE",
                              "TOKEN_EXPIRED: text that looks like a reason")
    assert refusal.definitive


def test_without_an_error_info_the_reason_is_the_status_codes_name_not_parsed_from_the_text():
    error = _error(grpc.StatusCode.INVALID_ARGUMENT, "TOKEN_ALREADY_USED: no trailers")
    assert reason_of(error) == "INVALID_ARGUMENT"
    # An in-doubt reason named only in the text does not make the refusal in doubt.
    assert refusal_of(error).definitive


def test_status_details_that_do_not_parse_give_the_codes_name():
    error = _error(grpc.StatusCode.UNAVAILABLE, "down", (("grpc-status-details-bin", b"\xff\x00not a status"),))
    assert reason_of(error) == "UNAVAILABLE"
    assert not refusal_of(error).definitive


def test_an_in_doubt_reason_in_the_error_info_leaves_the_order_in_doubt():
    trailing = tuple(to_grpc_status(grpc.StatusCode.ALREADY_EXISTS, "TOKEN_ALREADY_USED", "again").trailing_metadata)
    refusal = refusal_of(_error(grpc.StatusCode.ALREADY_EXISTS, "again", trailing))
    assert refusal.reason == "TOKEN_ALREADY_USED" and not refusal.definitive


def _imports(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_only_the_gateway_builds_exchange_messages():
    speaking = sorted(path.name for path in OMS.glob("*.py")
                      if "tessera.exchange.v1.exchange_pb2" in _imports(path))
    assert speaking == ["gateway.py"]
