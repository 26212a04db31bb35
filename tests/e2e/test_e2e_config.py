"""A service without a usable AIS_RISK_HMAC_SECRET refuses to start, saying which variable."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import tessera_e2e as e2e

SHORT_SECRET = "s3cr3tXY!z"  # 10 bytes


@pytest.mark.parametrize("service", ["risk", "oms", "exchange"])
@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(None, id="unset"),
        pytest.param("", id="empty"),
        pytest.param(SHORT_SECRET, id="too-short"),
    ],
)
def test_service_refuses_to_start_without_a_usable_secret(service, secret, tmp_path):
    env = e2e.base_env(
        AIS_RISK_HMAC_SECRET=secret,
        AIS_RISK_HMAC_KEY_ID=None,
        TESSERA_DATABASE_URL=e2e.sqlite_url(tmp_path / "t.db"),
        **{f"TESSERA_{service.upper()}_PORT": "0"},
    )
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", f"services.{service}"],
            env=env, cwd=str(e2e.PROJECT_ROOT), capture_output=True, text=True, timeout=30,
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"{service} kept running without a usable secret; stdout: {timeout.stdout!r}")
    elapsed = time.monotonic() - started
    assert result.returncode == 2, e2e.show(result)
    assert "AIS_RISK_HMAC_SECRET" in result.stderr, e2e.show(result)
    assert "listening on" not in result.stdout, e2e.show(result)
    assert "Traceback" not in result.stderr, e2e.show(result)
    if secret:
        assert secret not in result.stderr and secret not in result.stdout, e2e.show(result)
    assert elapsed < 15, f"{service} took {elapsed:.1f}s to refuse"
