"""The contract: buf-lint-clean protos and generated code that matches them."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
BUF = ROOT / "node_modules" / ".bin" / "buf"


def test_generated_python_code_matches_the_proto_files() -> None:
    result = subprocess.run(
        [sys.executable, "tools/gen_proto.py", "--check", "--only", "python"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_generated_go_code_matches_the_proto_files() -> None:
    missing = [plugin for plugin in ("protoc-gen-go", "protoc-gen-go-grpc") if shutil.which(plugin) is None]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{', '.join(missing)} not installed: run `make setup`")
        pytest.skip(f"{', '.join(missing)} not installed: run `make setup`")
    result = subprocess.run(
        [sys.executable, "tools/gen_proto.py", "--check", "--only", "go"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "clients/go/gen/ is up to date (7 files)" in result.stdout


def test_generated_code_check_fails_when_a_proto_changes(tmp_path: pathlib.Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "proto", copy / "proto")
    shutil.copytree(ROOT / "tessera", copy / "tessera")
    shutil.copytree(ROOT / "tools", copy / "tools")
    proto = copy / "proto" / "tessera" / "common" / "v1" / "types.proto"
    venue = "string venue = 4 [(google.api.field_behavior) = REQUIRED];"
    assert venue in proto.read_text()
    proto.write_text(proto.read_text().replace(venue, venue + "\n  string desk = 99;", 1))
    result = subprocess.run(
        [sys.executable, "tools/gen_proto.py", "--check", "--only", "python"], cwd=copy, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "tessera/common/v1/types_pb2.py" in result.stderr


def test_proto_files_pass_buf_lint() -> None:
    if not BUF.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("the buf CLI is not installed (npm ci)")
        pytest.skip("the buf CLI is not installed; run `npm ci`")
    result = subprocess.run([str(BUF), "lint"], cwd=ROOT / "proto", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_of_the_design_is_in_the_contract() -> None:
    from tessera.exchange.v1 import exchange_pb2
    from tessera.oms.v1 import oms_pb2
    from tessera.risk.v1 import risk_pb2

    expected = {
        (risk_pb2, "RiskService"): {"ValidateOrder", "ValidateOrders", "GetTradingState", "SetTradingState", "GetLimits"},
        (oms_pb2, "OrderManagementService"): {
            "SubmitOrder", "SubmitOrders", "CancelOrder", "CancelAllOrders", "EmergencyCancelAll", "GetOrder",
            "ListOrders", "ListTrades", "StreamOrderEvents", "CreateOrderManager", "GetOrderManager",
        },
        (exchange_pb2, "ExchangeService"): {
            "ExecuteOrder", "CancelOrder", "CancelAllOrders", "EmergencyCancelAll", "SetLeverage",
            "SetMarginMode", "GetTicker", "StreamExecutionReports",
        },
    }
    for (module, name), rpcs in expected.items():
        service = module.DESCRIPTOR.services_by_name[name]
        assert rpcs <= {method.name for method in service.methods}, name
