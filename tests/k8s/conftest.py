"""Fixtures of the manifest tests: each overlay rendered once per session.

Rendering needs the pinned kubectl that ``make tools`` (part of ``make setup``) puts
in ``.tools/``. Without it the tests are skipped, except with ``CI=true``, where they
fail: CI must never pass without having rendered the manifests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import k8s_manifests  # noqa: E402


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return k8s_manifests.require_tool(k8s_manifests.kubectl_path())


@pytest.fixture(scope="session")
def rendered(kubectl: Path) -> dict[str, list[dict]]:
    """Every overlay's objects, as ``kubectl kustomize`` prints them."""
    overlays = k8s_manifests.K8S / "overlays"
    return {name: k8s_manifests.render(overlays / name, kubectl) for name in k8s_manifests.OVERLAYS}


@pytest.fixture(params=k8s_manifests.OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def objects(rendered: dict[str, list[dict]], overlay: str) -> list[dict]:
    return rendered[overlay]
