"""Helpers of the end-to-end suite: the test environment, orders, tokens, errors, the store.

Imported by the e2e tests as ``tessera_e2e`` (``tests/e2e/conftest.py`` puts this
directory on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from services.cli.stack import PROJECT_ROOT, Stack
from services.common.identities import provision_local
from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

SECRET = "e2e-test-secret-0123456789abcdef-0123456789"  # 43 bytes
KEY_ID = "e2e-key-1"
PRICES = {"BTCUSDT": Decimal("65000"), "ETHUSDT": Decimal("3200"), "SOLUSDT": Decimal("150")}
TAKER_FEE = Decimal("0.0004")
MAX_NOTIONAL = Decimal("250000")
PG_ADMIN_URL = os.environ.get("TESSERA_E2E_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
RPC_TIMEOUT = 15.0
#: The suite's identities (one key pair, entitlements and tokens for every stack it starts):
#: the principal ``local`` holds every role, so the tests' stubs (and ``tessera`` commands
#: run with :func:`base_env`) may call anything; tests/e2e/test_e2e_access.py tries the roles.
AUTH_DIR = Path(tempfile.mkdtemp(prefix="tessera-e2e-auth-"))
AUTH_ENV = provision_local(AUTH_DIR)


# -- environment ----------------------------------------------------------------------
def base_env(**overrides: str | None) -> dict[str, str]:
    """This process's environment without any Tessera/venue settings, plus the test ones.

    An override of None removes the variable.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TESSERA_", "AIS_", "ASTER_"))
    }
    env.update(
        {
            "AIS_RISK_HMAC_SECRET": SECRET,
            "AIS_RISK_HMAC_KEY_ID": KEY_ID,
            "TESSERA_EXECUTION_MODE": "paper",
            "TESSERA_PRICES": ",".join(f"{s}={p}" for s, p in PRICES.items()),
            "TESSERA_PAPER_TAKER_FEE": str(TAKER_FEE),
            "TESSERA_RISK_MAX_NOTIONAL": str(MAX_NOTIONAL),
            "TESSERA_RISK_ALLOWED_SYMBOLS": ",".join(PRICES),
            "TESSERA_METRICS_PORT": "0",  # /metrics on a free port: never two tests on 9101
            "PYTHONUNBUFFERED": "1",
            **AUTH_ENV,
        }
    )
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), path]))
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def channel(address: str, credentials: grpc.ChannelCredentials | None = None,
            options: Any = None, *, token_file: str | None = None) -> grpc.Channel:
    """A channel to a service of the suite's stacks, presenting the suite's client token
    (principal ``local``, every role), or the token in ``token_file``."""
    from services.cli.connection import BearerToken

    raw = (grpc.insecure_channel(address, options=options) if credentials is None
           else grpc.secure_channel(address, credentials, options=options))
    token = Path(token_file or AUTH_ENV["TESSERA_TOKEN_FILE"]).read_text().strip()
    return grpc.intercept_channel(raw, BearerToken(token))


#: The suite's service identity (principal ``tessera-service``, role service only): what
#: the OMS presents to the Exchange.
SERVICE_TOKEN_FILE = AUTH_ENV["TESSERA_SERVICE_TOKEN_FILE"]


def wait_for_log(read: Callable[[], str], *wanted: str, timeout: float = 5.0) -> str:
    """The first line of ``read()`` holding every one of ``wanted``, waiting for it (access
    log lines are written a moment after their call); fails with the log's tail."""
    deadline = time.monotonic() + timeout
    while True:
        text = read()
        found = next((line for line in text.splitlines() if all(w in line for w in wanted)), None)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line with {wanted!r}; the log ends:\n" + "\n".join(text.splitlines()[-5:]))
        time.sleep(0.05)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def start_stack(database_url: str, log_dir: Path, **env_overrides: str | None) -> Stack:
    return Stack(database_url=database_url, env=base_env(**env_overrides), log_dir=log_dir).start()


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m services.cli ARGS`` (what the ``tessera`` console script runs)."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=dict(env if env is not None else base_env()),
        cwd=str(cwd or PROJECT_ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def show(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


# -- orders ---------------------------------------------------------------------------
def new_account() -> str:
    return "e2e-" + uuid.uuid4().hex[:12]


def intent(**fields: Any) -> pb.OrderIntent:
    """A valid paper market order (BUY 0.01 BTCUSDT futures) with ``fields`` changed."""
    values: dict[str, Any] = {
        "account": new_account(),
        "venue": "aster",
        "market_type": pb.MARKET_TYPE_FUTURES,
        "symbol": "BTCUSDT",
        "side": pb.SIDE_BUY,
        "order_type": pb.ORDER_TYPE_MARKET,
        "quantity": "0.01",
        "time_in_force": pb.TIME_IN_FORCE_GTC,
    }
    values.update(fields)
    return pb.OrderIntent(**values)


@dataclass
class Approved:
    order: pb.Order
    token: str

    def request(self, **order_changes: Any) -> oms_pb2.SubmitOrderRequest:
        order = pb.Order()
        order.CopyFrom(self.order)
        for name, value in order_changes.items():
            setattr(order, name, value)
        return oms_pb2.SubmitOrderRequest(order=order, risk_token=self.token)


def live_account(stack: Any) -> str | None:
    """The one account a live Exchange without a venue accounts registry trades for
    (``ASTER_ACCOUNT_ID``: it refuses the others); None for other stacks."""
    exchange = getattr(stack, "processes", {}).get("exchange")
    env = getattr(exchange, "env", None) or {}
    if env.get("TESSERA_EXECUTION_MODE") == "live" and not env.get("TESSERA_VENUE_ACCOUNTS_FILE"):
        return env.get("ASTER_ACCOUNT_ID") or None
    return None


def approve(stack: Stack, **fields: Any) -> Approved:
    """Validate an order with Risk and insist it was approved (for a live stack with one
    venue account, the order is that account's unless the caller names another)."""
    if "account" not in fields and live_account(stack):
        fields["account"] = live_account(stack)
    answer = stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=intent(**fields)), timeout=RPC_TIMEOUT)
    assert answer.order.status == pb.ORDER_STATUS_APPROVED, (answer.order, list(answer.violations))
    assert answer.risk_token, "an approved order comes with a risk token"
    assert not answer.violations
    return Approved(answer.order, answer.risk_token)


def sign(order: pb.Order, issued_at: int, *, key_id: str = KEY_ID, secret: str = SECRET) -> str:
    """A risk token for ``order`` signed here, as Risk would (but with any issued-at or key)."""
    import core_ext
    from services.common.convert import order_from_proto

    keyring = core_ext.KeyRing(key_id, secret.encode())
    body = core_ext.canonical_order_body(order_from_proto(order).token_fields())
    return core_ext.sign_token(keyring, body, issued_at)


def tamper_signature(token: str) -> str:
    """The same token with the first character of its signature changed (all 6 bits of a
    base64 character's value are significant there, so the signature bytes change)."""
    head, _, signature = token.rpartition(".")
    assert head and signature, token
    first = "B" if signature[0] != "B" else "C"
    return f"{head}.{first}{signature[1:]}"


# -- errors ---------------------------------------------------------------------------
def error_reason(error: grpc.RpcError) -> str | None:
    """The reason of the google.rpc.ErrorInfo detail, if any."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return None


def error_details(error: grpc.RpcError) -> dict[str, Any]:
    """The status details of a refused call by type: ErrorInfo, BadRequest, RetryInfo."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: dict[str, Any] = {}
    for detail in status.details if status is not None else ():
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found[kind.__name__] = message
    return found


def expect_error(call: Callable[[], Any], code: grpc.StatusCode, reason: str | None = None) -> grpc.RpcError:
    """Make the call; insist it fails with ``code`` and, when given, the reason code both
    at the start of the message and as the ErrorInfo detail."""
    with pytest.raises(grpc.RpcError) as caught:
        answer = call()
        print(f"unexpected success: {answer}")
    error = caught.value
    assert error.code() == code, f"expected {code.name} {reason or ''}, got {error.code().name}: {error.details()}"
    if reason is not None:
        assert error.details().startswith(f"{reason}:") or error.details() == reason, (
            f"expected the message to start with {reason}, got {error.details()!r}"
        )
        assert error_reason(error) == reason, f"ErrorInfo reason {error_reason(error)!r}, expected {reason}"
    return error


# -- the store ------------------------------------------------------------------------
class StoreView:
    """Read-only access to what the services stored, through the repository layer."""

    def __init__(self, url: str) -> None:
        from services.store import Store
        from services.store.engine import make_engine

        self.url = url
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///"):]
            engine = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
        else:
            engine = make_engine(url, connect_args={"options": "-c default_transaction_read_only=on"},
                                 pool_size=2, max_overflow=2)
        self.store = Store(engine)

    @contextlib.contextmanager
    def uow(self) -> Iterator[Any]:
        with self.store.uow(read_only=True) as uow:
            yield uow

    def order(self, order_id: str) -> Any:
        with self.uow() as uow:
            return uow.orders.get(order_id)

    def statuses(self, order_id: str) -> list[str]:
        """The to-status of every stored event of the order, in sequence order."""
        with self.uow() as uow:
            events = uow.orders.events(order_id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1)), "event sequences are 1..n"
        return [_name(e.to_status) for e in events]

    def events(self, order_id: str) -> list[Any]:
        with self.uow() as uow:
            return uow.orders.events(order_id)

    def trades(self, order_id: str) -> list[Any]:
        with self.uow() as uow:
            return uow.trades.for_order(order_id)

    def status(self, order_id: str) -> str:
        order = self.order(order_id)
        assert order is not None, f"order {order_id} is not stored"
        return _name(order.status)

    def assert_untouched(self, order_id: str) -> None:
        """The order is still APPROVED: never SUBMITTED, no trade."""
        assert self.status(order_id) == "APPROVED"
        assert self.statuses(order_id) == ["PENDING", "APPROVED"]
        assert self.trades(order_id) == []

    def close(self) -> None:
        self.store.dispose()


def _name(status: Any) -> str:
    return getattr(status, "value", status)


# -- secrets: appear nowhere ------------------------------------------------------------
def identity_secrets() -> dict[str, str]:
    """The suite's identity secrets every stack holds, by what they are: the client's and
    the services' bearer JWTs (whole, and their signatures alone) and the JWT signing key
    (its PEM body)."""
    client = Path(AUTH_ENV["TESSERA_TOKEN_FILE"]).read_text().strip()
    service = Path(SERVICE_TOKEN_FILE).read_text().strip()
    pem = (AUTH_DIR / "jwt-signing.pem").read_text()
    return {"client bearer JWT": client, "client JWT's signature": client.rsplit(".", 1)[1],
            "service JWT": service, "service JWT's signature": service.rsplit(".", 1)[1],
            "JWT signing key": "".join(line for line in pem.splitlines() if not line.startswith("-----"))}


def database_text(url: str) -> tuple[list[str], str]:
    """Every table of the database and every column of every row of them, as one text."""
    def as_text(value: Any) -> str:
        value = bytes(value) if isinstance(value, memoryview) else value
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
            dump = "\n".join(" ".join(as_text(value) for value in row) for table in tables
                             for row in connection.execute(text(f'SELECT * FROM "{table}"')))
    finally:
        engine.dispose()
    return tables, dump


def assert_secrets_nowhere(needles: Mapping[str, str], *, log_dir: Path, database_url: str,
                           told: Iterable[str] = ()) -> tuple[list[str], str]:
    """None of ``needles`` (secrets by what they are) is in any file under ``log_dir`` (the
    processes' output, every file they wrote), in any message a client was ``told``, or
    anywhere in the database; returns the database's tables and text for further checks.
    Stop the stack first: its logs are flushed and closed then."""
    files = [p for p in log_dir.rglob("*") if p.is_file()]
    assert files, f"no log under {log_dir}"
    for path in files:
        data = path.read_bytes()
        for what, needle in needles.items():
            assert needle.encode() not in data, f"the {what} is in {path}"
    for message in told:
        for what, needle in needles.items():
            assert needle not in message, f"the {what} was sent to a client: {message}"
    tables, dump = database_text(database_url)
    for what, needle in needles.items():
        assert needle not in dump, f"the {what} is stored in the database"
    return tables, dump


# -- scenarios shared by the SQLite and PostgreSQL suites -------------------------------
def check_happy_path(stack: Stack, store: StoreView) -> None:
    """A paper market order through Risk -> OMS -> Exchange, checked in the answer and the store."""
    approved = approve(stack, symbol="BTCUSDT", side=pb.SIDE_BUY, quantity="0.01")
    order_id = approved.order.order_id
    assert store.status(order_id) == "APPROVED"
    assert store.statuses(order_id) == ["PENDING", "APPROVED"]

    answer = stack.oms.SubmitOrder(
        oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=approved.token), timeout=RPC_TIMEOUT
    )
    price = PRICES["BTCUSDT"]
    quantity = Decimal("0.01")
    commission = quantity * price * TAKER_FEE

    # The answer.
    assert answer.order.order_id == order_id
    assert answer.order.status == pb.ORDER_STATUS_FILLED, answer.order
    assert Decimal(answer.order.filled_quantity) == quantity
    assert Decimal(answer.order.average_fill_price) == price
    assert len(answer.trades) == 1, answer.trades
    trade = answer.trades[0]
    assert trade.order_id == order_id
    assert trade.side == pb.SIDE_BUY and trade.symbol == "BTCUSDT"
    assert Decimal(trade.quantity) == quantity
    assert Decimal(trade.price) == price
    assert Decimal(trade.commission) == commission
    assert trade.trade_id

    # What the OMS stored.
    order = store.order(order_id)
    assert _name(order.status) == "FILLED"
    assert order.filled_quantity == quantity
    assert order.average_fill_price == price
    assert store.statuses(order_id) == ["PENDING", "APPROVED", "SUBMITTED", "FILLED"]
    events = store.events(order_id)
    assert [_name(e.from_status) if e.from_status is not None else None for e in events] == [
        None, "PENDING", "APPROVED", "SUBMITTED"
    ]
    times = [e.event_time for e in events]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)
    trades = store.trades(order_id)
    assert len(trades) == 1
    assert trades[0].trade_id == trade.trade_id
    assert trades[0].quantity == quantity
    assert trades[0].price == price
    assert trades[0].commission == commission
    assert _name(trades[0].side) == "BUY"

    # And what GetOrder reports.
    got = stack.oms.GetOrder(oms_pb2.GetOrderRequest(order_id=order_id), timeout=RPC_TIMEOUT)
    assert got.order.status == pb.ORDER_STATUS_FILLED
    assert [e.to_status for e in got.events] == [
        pb.ORDER_STATUS_PENDING, pb.ORDER_STATUS_APPROVED, pb.ORDER_STATUS_SUBMITTED, pb.ORDER_STATUS_FILLED
    ]
    assert [t.trade_id for t in got.trades] == [trade.trade_id]


def oms_credential(method: str, request: Any = b"") -> tuple[tuple[str, str], ...]:
    """The call metadata with which the OMS proves itself to the Exchange service for one
    ``request`` (the message, or its bytes), once (the tests hold the key ring, so they
    can act as the OMS to inspect the exchange)."""
    import core_ext
    from services.common.tokens import oms_call_metadata

    return oms_call_metadata(core_ext.KeyRing(KEY_ID, SECRET.encode()), method, request)


def execution_reports(stack: Stack, *, seconds: float = 1.0) -> list[pb.ExecutionReport]:
    """Every report the exchange has retained (the stream follows forever: read it for a
    moment, then stop)."""
    reports = []
    request = exchange_pb2.StreamExecutionReportsRequest(after_sequence=0)
    stream = stack.exchange.StreamExecutionReports(request, timeout=seconds,
                                                   metadata=oms_credential("StreamExecutionReports", request))
    try:
        for item in stream:
            reports.append(item.report)
    except grpc.RpcError as error:
        if error.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    return reports


#: How long after a trading-state change commits every Risk replica obeys it: one poll
#: of the state (TESSERA_RISK_STATE_POLL_SECONDS, 0.1 s by default) and the read, with
#: room for a loaded test machine.
TRADING_STATE_BOUND = 0.5


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- PostgreSQL -------------------------------------------------------------------------
@contextlib.contextmanager
def fresh_postgres_database(prefix: str, **url_changes: Any) -> Iterator[str]:
    """A new, empty PostgreSQL database named ``<prefix>_<hex>`` on the test server, as a
    URL (``url_changes``, e.g. ``password=...``, are applied to it); dropped at the end.

    Unreachable, the calling tests are skipped, except with ``CI=true``, where they fail.
    """
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        message = f"PostgreSQL is unreachable at {PG_ADMIN_URL}: {str(error).splitlines()[0]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield make_url(PG_ADMIN_URL).set(database=name, **url_changes).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
