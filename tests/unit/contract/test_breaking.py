"""The contract stays compatible with the last released one (buf breaking, FILE rules),
and the check really catches a breaking change while letting additions through."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
BUF = ROOT / "node_modules" / ".bin" / "buf"
TOOL = ROOT / "tools" / "proto_release.py"
RELEASED = ROOT / "proto" / "released"
TYPES = "tessera/common/v1/types.proto"
RISK = "tessera/risk/v1/risk.proto"


@pytest.fixture(autouse=True)
def _buf_installed() -> None:
    if not BUF.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("the buf CLI is not installed: run `make setup`")
        pytest.skip("the buf CLI is not installed: run `make setup`")


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), "check", *args], cwd=ROOT, capture_output=True, text=True)


def latest() -> pathlib.Path:
    result = subprocess.run([sys.executable, str(TOOL), "latest"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return ROOT / result.stdout.strip()


def edited_copy(tmp_path: pathlib.Path, edits: dict[str, list[tuple[str, str]]]) -> pathlib.Path:
    """proto/ copied to tmp_path, with each (old, new) replacement made exactly once."""
    copy = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", copy, ignore=shutil.ignore_patterns("released"))
    for name, replacements in edits.items():
        path = copy / name
        text = path.read_text(encoding="utf-8")
        for old, new in replacements:
            assert text.count(old) == 1, f"{old!r} is not in {name} exactly once"
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
    return copy


def test_the_latest_release_is_a_buf_image_of_the_whole_contract() -> None:
    baseline = latest()
    assert baseline.parent == RELEASED and baseline.name.startswith("v")
    files = {f["name"] for f in json.loads(baseline.read_text(encoding="utf-8"))["file"]}
    assert {TYPES, RISK, "tessera/oms/v1/oms.proto", "tessera/exchange/v1/exchange.proto"} <= files


def test_proto_has_no_breaking_change_against_the_last_release() -> None:
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"no breaking change against the released contract {latest().name}" in result.stdout


@pytest.mark.parametrize(
    "edits, expected",
    [
        pytest.param({TYPES: [("  string venue = 4 [", "  string venue = 40 [")]},
                     "FIELD_NO_DELETE", id="field-renumbered"),
        pytest.param({TYPES: [("  string quantity = 9 [", "  int64 quantity = 9 [")]},
                     "FIELD_SAME_TYPE", id="field-type-changed"),
        pytest.param({RISK: [("  rpc GetLimits(GetLimitsRequest) returns (GetLimitsResponse);\n", "")]},
                     "RPC_NO_DELETE", id="rpc-removed"),
    ],
)
def test_the_check_catches_a_breaking_change(tmp_path: pathlib.Path, edits, expected) -> None:
    result = run_check("--proto", str(edited_copy(tmp_path, edits)), "--error-format", "json")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "breaking changes against the released contract" in result.stderr
    rules = {json.loads(line)["type"] for line in result.stdout.splitlines() if line.startswith("{")}
    assert expected in rules, result.stdout


def test_additions_are_not_breaking(tmp_path: pathlib.Path) -> None:
    copy = edited_copy(tmp_path, {
        TYPES: [
            ("  string replaced_by_order_id = 27 [(google.api.field_behavior) = OUTPUT_ONLY];\n",
             "  string replaced_by_order_id = 27 [(google.api.field_behavior) = OUTPUT_ONLY];\n  string desk = 99;\n"),
            ("  ORDER_STATUS_EXPIRED = 10;\n", "  ORDER_STATUS_EXPIRED = 10;\n  ORDER_STATUS_SUSPENDED = 11;\n"),
        ],
        RISK: [(
            "  rpc GetLimits(GetLimitsRequest) returns (GetLimitsResponse);\n",
            "  rpc GetLimits(GetLimitsRequest) returns (GetLimitsResponse);\n"
            "  // GetExposure is new.\n"
            "  rpc GetExposure(GetExposureRequest) returns (GetExposureResponse);\n",
        )],
    })
    (copy / RISK).write_text(
        (copy / RISK).read_text(encoding="utf-8")
        + "\nmessage GetExposureRequest {\n  string account = 1;\n}\n\nmessage GetExposureResponse {\n  string notional = 1;\n}\n",
        encoding="utf-8",
    )
    result = run_check("--proto", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr
