"""``tessera rebalance FILE``: run a batch of target orders from a CSV or JSON file.

The batch is an order manager (``--id``, by default derived from the file name and its
content), so running the same file again is idempotent: every row has a stable client
order id, Risk answers a row it has seen with the stored order, and only orders still
APPROVED are submitted. Rows go to Risk and the OMS in chunks through the batch RPCs
(``ValidateOrders``, ``SubmitOrders``), with progress on stderr.

File format: CSV with a header row, or JSON (a list of objects, or an object with an
``orders`` list). Columns / keys: ``symbol``, ``side``, ``quantity`` (required);
``type`` (market, limit, stop-market, stop-limit, take-profit, take-profit-market; default
market, limit with a price),
``price``, ``stop_price``, ``tif`` (gtc, ioc, fok, gtd), ``expire_time`` (ISO 8601),
``market`` (futures, spot), ``leverage``, ``reduce_only``, ``post_only``,
``client_order_id``, ``account``, ``venue``.
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import json
import pathlib
import sys
from typing import Any, Iterable

import grpc

from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

from . import output
from .connection import connect
from .client import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_SUBMISSION_REJECTED,
    MARKETS,
    ORDER_TYPES,
    SIDES,
    TIME_IN_FORCE,
    UsageError,
    add_connection_arguments,
    err,
    parse_time,
)

KNOWN_KEYS = {
    "symbol", "side", "quantity", "type", "price", "stop_price", "tif", "expire_time", "market",
    "leverage", "reduce_only", "post_only", "client_order_id", "account", "venue",
}
TRUE = {"1", "true", "yes", "y"}


def add_rebalance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=pathlib.Path, help="CSV or JSON file of target orders")
    parser.add_argument("--id", dest="identifier", default="",
                        help="the order manager's unique identifier (default: file name + content hash)")
    parser.add_argument("--account", default="demo", help="target account (default %(default)s)")
    parser.add_argument("--venue", default="aster", help="default venue (default %(default)s)")
    parser.add_argument("--chunk", type=int, default=500, help="orders per batch call (default %(default)s)")
    add_connection_arguments(parser, risk=True)


def read_rows(path: pathlib.Path) -> list[dict[str, str]]:
    """The file's rows as string dictionaries (keys lower-cased)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}: not valid JSON ({error})") from None
        rows = data.get("orders") if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise UsageError(f"{path}: expected a list of order objects (or {{\"orders\": [...]}})")
    else:
        rows = list(csv.DictReader(line for line in text.splitlines() if line.strip()))
    normalised = [{str(k).strip().lower(): "" if v is None else str(v).strip() for k, v in row.items()} for row in rows]
    if not normalised:
        raise UsageError(f"{path}: no orders")
    for number, row in enumerate(normalised, 1):
        unknown = set(row) - KNOWN_KEYS
        if unknown:
            raise UsageError(f"{path}: row {number}: unknown column(s) {', '.join(sorted(unknown))}")
        missing = [key for key in ("symbol", "side", "quantity") if not row.get(key)]
        if missing:
            raise UsageError(f"{path}: row {number}: missing {', '.join(missing)}")
    return normalised


def default_identifier(path: pathlib.Path, rows: list[dict[str, str]]) -> str:
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.stem)[:60] or "batch"
    return f"rebalance-{stem}-{digest}"


def _choice(row: dict[str, str], key: str, choices: dict[str, int], default: str, number: int) -> int:
    value = (row.get(key) or default).lower()
    if value not in choices:
        raise UsageError(f"row {number}: {key} must be one of {', '.join(choices)}, got {value!r}")
    return choices[value]


def row_intent(row: dict[str, str], number: int, identifier: str, args: argparse.Namespace) -> pb.OrderIntent:
    price = row.get("price", "")
    stop = row.get("stop_price", "")
    default_type = ("stop-limit" if price else "stop-market") if stop else ("limit" if price else "market")
    intent = pb.OrderIntent(
        client_order_id=row.get("client_order_id")
        or f"rb-{hashlib.sha256(identifier.encode()).hexdigest()[:10]}-{number}",
        account=row.get("account") or args.account,
        venue=row.get("venue") or args.venue,
        market_type=_choice(row, "market", MARKETS, "futures", number),
        symbol=row["symbol"].upper(),
        side=_choice(row, "side", SIDES, "", number),
        order_type=_choice(row, "type", ORDER_TYPES, default_type, number),
        quantity=row["quantity"],
        price=price,
        stop_price=stop,
        time_in_force=_choice(row, "tif", TIME_IN_FORCE, "gtc", number),
        reduce_only=row.get("reduce_only", "").lower() in TRUE,
        post_only=row.get("post_only", "").lower() in TRUE,
        leverage=row.get("leverage", ""),
        order_manager_id=identifier,
    )
    if row.get("expire_time"):
        intent.expire_time.FromDatetime(parse_time(row["expire_time"]))
    return intent


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def progress(stage: str, done: int, total: int, counts: collections.Counter[str]) -> None:
    detail = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    end = "\r" if sys.stderr.isatty() and done < total else "\n"
    print(f"{stage}: {done}/{total}  ({detail})", end=end, file=sys.stderr, flush=True)


def cmd_rebalance(args: argparse.Namespace) -> int:
    if args.chunk < 1:
        raise UsageError("--chunk must be at least 1")
    rows = read_rows(args.file)
    identifier = args.identifier or default_identifier(args.file, rows)
    intents = [row_intent(row, number, identifier, args) for number, row in enumerate(rows, 1)]
    with connect(args, args.risk) as risk_channel, connect(args, args.oms) as oms_channel:
        risk = risk_pb2_grpc.RiskServiceStub(risk_channel)
        oms = oms_pb2_grpc.OrderManagementServiceStub(oms_channel)
        try:
            return run_rebalance(risk, oms, identifier, intents, args)
        except grpc.RpcError as error:
            err(output.rpc_error(error, "the rebalance"))
            return EXIT_ERROR


def run_rebalance(risk: Any, oms: Any, identifier: str, intents: list[pb.OrderIntent], args: argparse.Namespace) -> int:
    request = oms_pb2.CreateOrderManagerRequest(unique_identifier=identifier, target_account_uid=args.account,
                                                status="created")
    created = oms.CreateOrderManager(request, timeout=args.timeout)
    print(f"order manager {identifier} ({'created' if created.created else 'exists: resuming'}), "
          f"{len(intents)} orders", file=sys.stderr, flush=True)

    to_submit: list[oms_pb2.SubmitOrderRequest] = []
    checked: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    for batch in chunks(intents, args.chunk):
        answer = risk.ValidateOrders(risk_pb2.ValidateOrdersRequest(orders=batch), timeout=args.timeout)
        for intent, result in zip(batch, answer.results):
            if result.HasField("error") and result.error.code:
                checked["error"] += 1
                errors.append(f"{intent.client_order_id}: {result.error.code} {result.error.message}")
                continue
            checked[output.status(result.order.status).lower()] += 1
            if result.risk_token and result.order.status == pb.ORDER_STATUS_APPROVED:
                to_submit.append(oms_pb2.SubmitOrderRequest(order=result.order, risk_token=result.risk_token))
        progress("risk", sum(checked.values()), len(intents), checked)

    submitted: collections.Counter[str] = collections.Counter()
    if not to_submit:
        progress("submit", 0, 0, submitted)
    for batch in chunks(to_submit, args.chunk):
        answer = oms.SubmitOrders(oms_pb2.SubmitOrdersRequest(orders=batch), timeout=args.timeout)
        for item, result in zip(batch, answer.results):
            if result.HasField("error") and result.error.code:
                submitted["error"] += 1
                errors.append(f"{item.order.client_order_id}: {result.error.code} {result.error.message}")
                continue
            submitted[output.status(result.order.status).lower()] += 1
        progress("submit", sum(submitted.values()), len(to_submit), submitted)

    final = oms.GetOrderManager(oms_pb2.GetOrderManagerRequest(unique_identifier=identifier), timeout=args.timeout)
    statuses = collections.Counter(output.status(order.status) for order in final.orders)
    print(output.table(("status", "orders"), sorted(statuses.items())))
    manager = final.order_manager
    print(f"order manager {identifier}: {manager.status}; received "
          f"{output.timestamp(manager, 'order_received_time')}, ended {output.timestamp(manager, 'execution_end')}")
    for line in errors:
        err(line)
    if errors:
        return EXIT_ERROR
    if checked.get("rejected"):
        return EXIT_REJECTED  # Risk rejected some of the file's orders
    return EXIT_SUBMISSION_REJECTED if statuses.get("REJECTED") else EXIT_OK


__all__ = ["add_rebalance_arguments", "cmd_rebalance"]
