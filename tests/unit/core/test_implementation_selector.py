"""The core_ext selector: compiled by default, pure Python on request or as a fallback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import core_ext

REPO = Path(core_ext.__file__).resolve().parent.parent


def _selected(env_value: str | None, block_compiled: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TESSERA_PURE_PYTHON"}
    if env_value is not None:
        env["TESSERA_PURE_PYTHON"] = env_value
    prelude = ""
    if block_compiled:  # make the compiled modules unimportable, as on a machine without a build
        prelude = ("import sys; sys.modules['core_ext._token_c'] = None; "
                   "sys.modules['core_ext._fsm_c'] = None; ")
    code = prelude + "import core_ext; print(core_ext.IMPLEMENTATION, core_ext.KeyRing.__module__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def test_pure_python_is_forced_by_the_environment_variable():
    assert _selected("1") == "python core_ext._token_py"


def test_falls_back_to_python_when_the_compiled_core_is_missing():
    assert _selected(None, block_compiled=True) == "python core_ext._token_py"


def test_compiled_core_is_selected_by_default_when_built():
    try:
        core_ext.load_implementation("cython")
    except ImportError:
        pytest.skip("compiled core not built")
    assert _selected(None) == "cython core_ext._token_c"
    assert _selected("0") == "cython core_ext._token_c"


def test_load_implementation_exposes_the_same_api_for_both(impl):
    assert impl.IMPLEMENTATION in core_ext.IMPLEMENTATIONS
    for name in core_ext.IMPLEMENTED_NAMES:
        assert callable(getattr(impl, name)), name


def test_load_implementation_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown implementation"):
        core_ext.load_implementation("rust")


def test_package_reexports_the_selected_implementation():
    chosen = core_ext.load_implementation(core_ext.IMPLEMENTATION)
    assert core_ext.verify_token is chosen.verify_token
    assert core_ext.transition is chosen.transition
