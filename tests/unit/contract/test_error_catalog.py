"""The error catalog: one table the servers answer from and docs/errors.md is generated from."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import grpc

import core_ext
from services.common import error_catalog
from services.exchange.aster.errors import VENUE_ERROR_CODES

ROOT = pathlib.Path(__file__).resolve().parents[3]
#: A reason given to an error where it is raised (``reason="X"``) or a class's own (``reason = "X"``).
_REASON_LITERAL = re.compile(r'reason\s*=\s*"([A-Z][A-Z0-9_]+)"')


def test_docs_errors_page_is_the_catalog_as_generated():
    page = (ROOT / "docs" / "errors.md").read_text()

    assert page == error_catalog.markdown(), "docs/errors.md is stale: python -m services.common.error_catalog --write"


def test_the_check_command_fails_on_a_stale_page(tmp_path, monkeypatch):
    stale = tmp_path / "errors.md"
    stale.write_text(error_catalog.markdown().replace("TOKEN_EXPIRED", "TOKEN_TIRED", 1))
    monkeypatch.setattr(error_catalog, "DOCS_PAGE", stale)

    assert error_catalog.main(["--check"]) == 1
    assert error_catalog.main(["--write"]) == 0
    assert error_catalog.main(["--check"]) == 0


def test_the_module_runs_as_a_command():
    result = subprocess.run([sys.executable, "-m", "services.common.error_catalog", "--check"], cwd=ROOT,
                            capture_output=True, text=True)

    assert result.returncode == 0, result.stderr


def test_every_reason_the_services_raise_is_in_the_catalog():
    raised: dict[str, set[str]] = {}
    for path in (ROOT / "services").rglob("*.py"):
        for match in _REASON_LITERAL.finditer(path.read_text()):
            raised.setdefault(match.group(1), set()).add(str(path.relative_to(ROOT)))
    raised.pop("ERROR")  # DomainError's placeholder: every raised error names its own reason

    missing = {name: sorted(where) for name, where in raised.items() if name not in error_catalog.REASONS}

    assert not missing
    assert len(raised) > 30  # the scan found the services' reasons


def test_every_token_reason_and_venue_code_is_in_the_catalog():
    tokens = [core_ext.TOKEN_MISSING, core_ext.TOKEN_MALFORMED, core_ext.TOKEN_UNKNOWN_KEY,
              core_ext.TOKEN_BAD_SIGNATURE, core_ext.TOKEN_NOT_YET_VALID, core_ext.TOKEN_EXPIRED,
              core_ext.TOKEN_FIELDS_CHANGED]

    assert {error_catalog.REASONS[name].code for name in tokens[:-1]} == {"UNAUTHENTICATED"}
    assert error_catalog.REASONS[core_ext.TOKEN_FIELDS_CHANGED].code == "PERMISSION_DENIED"
    for venue_code, rule in VENUE_ERROR_CODES.items():
        assert venue_code in error_catalog.VENUE_CODES[rule.reason]


def test_retryable_exactly_for_the_retryable_codes():
    for entry in error_catalog.REASONS.values():
        assert entry.retryable == (entry.code in {"UNAVAILABLE", "ABORTED", "RESOURCE_EXHAUSTED"}), entry.name
        assert entry.code in grpc.StatusCode.__members__


def test_the_table_lists_each_reason_with_its_code_retry_and_metadata_keys():
    page = error_catalog.markdown()

    assert ("| `TOKEN_ALREADY_USED` | PERMISSION_DENIED | no | `order_id`, `status` |" in page)
    assert "| `STORE_UNAVAILABLE` | UNAVAILABLE | yes, after 1 s |" in page
    assert "| `CONCURRENT_UPDATE` | ABORTED | yes, after 0.05 s | `order_id` |" in page
    assert "| `MARGIN_INSUFFICIENT` | FAILED_PRECONDITION | no | `venue_code`, `venue_payload` |" in page
    assert "Aster codes: -2019." in page
    assert "| `REQUIRED` |" in page  # the field reasons


def test_the_readme_links_the_errors_page():
    assert "docs/errors.md" in (ROOT / "README.md").read_text()
