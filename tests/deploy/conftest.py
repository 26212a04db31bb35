"""Fixtures of the deployment tests (``make deploy-test``): podman, the images, the
rendered dev overlay.

They need root, podman with runc, netavark, aardvark-dns and catatonit, and
debootstrap (``.ci/run`` installs them from Debian). Without them the tests are
skipped, except with ``CI=true`` or under ``make deploy-test``, where they fail: CI
must never pass without having run the image and the manifests for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for path in (str(HERE), str(ROOT / "tools"), str(ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)

import podman_deploy  # noqa: E402

KUBECTL = Path(os.environ.get("TESSERA_KUBECTL") or ROOT / ".tools" / "bin" / "kubectl")


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}\nCI=true: the deployment tests must run", pytrace=False)
    if os.environ.get("TESSERA_DEPLOY_TEST_REQUIRED") == "1":  # make deploy-test: asked for by name
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.deploy)


@pytest.fixture(scope="session")
def podman() -> podman_deploy.Podman:
    if os.geteuid() != 0:
        _unavailable("the deployment tests run podman as root")
    missing = podman_deploy.missing_requirements()
    if missing:
        _unavailable(f"not installed: {' '.join(missing)} (apt-get install {' '.join(missing)})")
    return podman_deploy.Podman.configured()


@pytest.fixture(scope="session")
def images(podman: podman_deploy.Podman) -> podman_deploy.Images:
    """The base, the stand-ins and Tessera's image (built or found in the cache)."""
    built = podman_deploy.prepare_images(podman)
    IMAGE_SECONDS.update(built.seconds)
    return built


IMAGE_SECONDS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if IMAGE_SECONDS:
        steps = ", ".join(f"{step} {seconds} s" for step, seconds in IMAGE_SECONDS.items())
        terminalreporter.write_line(f"deploy images (0.0 s: found in the cache): {steps}")


@pytest.fixture(scope="session")
def dev_overlay() -> list[dict[str, Any]]:
    """``k8s/overlays/dev`` rendered by the pinned kubectl, as a cluster would receive it."""
    if not (KUBECTL.is_file() and os.access(KUBECTL, os.X_OK)):
        _unavailable(f"{KUBECTL} is not installed (run `make tools`)")
    result = subprocess.run([str(KUBECTL), "kustomize", str(ROOT / "k8s" / "overlays" / "dev")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


@pytest.fixture(scope="session")
def declared_probes(dev_overlay: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each service's probes as its workload declares them (container name -> kind -> probe)."""
    probes = {}
    for obj in dev_overlay:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            for container in obj["spec"]["template"]["spec"]["containers"]:
                probes[container["name"]] = {k: v for k, v in container.items() if k.endswith("Probe")}
    return probes
