"""Rendering Tessera's kustomize overlays, and reading the rendered objects.

The invariants are checked in ``k8s_workload_checks``, ``k8s_config_checks`` and
``k8s_network_checks``: each ``check_*`` takes one overlay's objects and returns its
problems. The tests assert that the real overlays have none, and that a deliberately
broken copy has some, so a check can never silently stop biting.

The renderer is the pinned ``kubectl`` that ``make tools`` installs into ``.tools/``
(``TESSERA_KUBECTL`` overrides it); the schemas are those ``kubernetes-validate``
ships, so nothing here needs a cluster or the network.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
#: Schemas checked: the oldest Kubernetes release supported and the newest one shipped.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

#: The Tessera image's repository name (the last path component, before the tag).
TESSERA_IMAGE = "tessera"
SERVICES = {"risk": 50051, "oms": 50052, "exchange": 50053}
#: Each service's Prometheus /metrics port (TESSERA_<NAME>_METRICS_PORT).
METRICS_PORTS = {"risk": 9101, "oms": 9102, "exchange": 9103}
#: The only peer admitted to a metrics port: Prometheus pods of the monitoring namespace.
METRICS_SCRAPER_PEER = {
    "namespaceSelector": {"matchLabels": {"tessera.io/monitoring": "true"}},
    "podSelector": {"matchLabels": {"tessera.io/metrics-scraper": "true"}},
}
#: Services whose replica count an autoscaler owns. Not Risk: its replica count is its
#: shard count (docs/risk-sharding.md).
AUTOSCALED = {"oms"}
#: Risk runs as a StatefulSet: each replica owns the accounts of its ordinal.
SHARDED = "risk"
#: The Exchange records each execution in the store (never twice, whatever a restart forgot).
DATABASE_CLIENTS = {"risk", "oms", "exchange", "tessera-migrate"}
MIGRATION_JOB = "tessera-migrate"
#: Secrets an overlay may reference without rendering them: the prod overlay expects
#: them to exist (docs/deployment.md), with these keys.
EXTERNAL_SECRETS = {
    "tessera-hmac": {"current", "current-key-id", "previous", "previous-key-id"},
    "tessera-venue": {"api-key", "api-secret"},
    "tessera-venue-accounts": {"accounts.json"},
    "tessera-database": {"url"},
    "tessera-jwt": {"public.pem", "service-token"},
    # Mutual TLS between the OMS and the Exchange (prod: k8s/overlays/prod/mtls.yaml).
    "tessera-tls-exchange": {"tls.crt", "tls.key", "ca.crt"},
    "tessera-tls-oms": {"tls.crt", "tls.key", "ca.crt"},
}
#: Committed Secret values must be empty or carry this marker.
DEV_ONLY_MARKER = "dev-only"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet")

Obj = dict[str, Any]


# ---------------------------------------------------------------- rendering


def require_tool(path: Path, install_hint: str = "make tools") -> Path:
    """The tool's path, or a skip (a failure under CI=true) when it is not installed."""
    if path.is_file() and os.access(path, os.X_OK):
        return path
    message = f"{path} is not installed (run `{install_hint}`)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}\nCI=true: the manifest and Dockerfile checks must run", pytrace=False)
    pytest.skip(message)


def kubectl_path() -> Path:
    return Path(os.environ.get("TESSERA_KUBECTL") or ROOT / ".tools" / "bin" / "kubectl")


def render(kustomization: Path, kubectl: Path | None = None) -> list[Obj]:
    """``kubectl kustomize`` a directory and parse every object it prints.

    Raises
    ------
    RuntimeError
        kustomize failed; the message has its error output.
    """
    result = subprocess.run(
        [str(kubectl or kubectl_path()), "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization} failed:\n{result.stderr}")
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def validate_schemas(objects: Iterable[Obj], version: str) -> list[str]:
    """Strict validation (unknown fields are errors) against one release's schemas."""
    import kubernetes_validate

    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            problems.append(f"{ref(obj)}: {where}: {error.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as error:
            problems.append(f"{ref(obj)}: no schema for {obj.get('apiVersion')}/{obj.get('kind')}: {error}")
    return problems


# ---------------------------------------------------------------- access helpers


def ref(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def of_kind(objects: Iterable[Obj], *kinds: str) -> list[Obj]:
    return [obj for obj in objects if obj.get("kind") in kinds]


def named(objects: Iterable[Obj], kind: str, name: str) -> Obj:
    for obj in of_kind(objects, kind):
        if obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"{kind}/{name} not rendered")


def workloads(objects: Iterable[Obj]) -> list[Obj]:
    return of_kind(objects, *WORKLOAD_KINDS)


def image_repository(image: str) -> str:
    """An image reference's repository name: the last path component, before tag and digest."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def service_workload(objects: Iterable[Obj], name: str) -> Obj:
    """The Deployment or StatefulSet that runs the Tessera service ``name``."""
    for obj in of_kind(objects, "Deployment", "StatefulSet"):
        if obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"no Deployment or StatefulSet {name} rendered")


def long_running(objects: Iterable[Obj]) -> list[Obj]:
    """Tessera's own long-running workloads: every Deployment, and every StatefulSet that
    runs the Tessera image (not the in-cluster PostgreSQL of the dev overlay)."""
    return [
        obj for obj in of_kind(objects, "Deployment", "StatefulSet")
        if obj["kind"] == "Deployment"
        or any(image_repository(c.get("image", "")) == TESSERA_IMAGE for c in pod_template(obj)["spec"]["containers"])
    ]


def pod_template(workload: Obj) -> Obj:
    return workload["spec"]["template"]


def pod_spec(workload: Obj) -> Obj:
    return pod_template(workload)["spec"]


def pod_labels(workload: Obj) -> dict[str, str]:
    return pod_template(workload).get("metadata", {}).get("labels", {})


def containers(workload: Obj, *, init: bool = True) -> list[Obj]:
    spec = pod_spec(workload)
    return list(spec.get("initContainers", []) if init else []) + list(spec.get("containers", []))


def container_ports(container: Obj) -> dict[str, int]:
    return {port.get("name", str(port["containerPort"])): port["containerPort"] for port in container.get("ports", [])}


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label selector semantics; an empty selector matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity (``250m``, ``512Mi``, ``1``) as a number."""
    text = str(value)
    suffixes = {
        "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
        "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    }
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text)
    if match is None or match.group(2) not in {"", *suffixes}:
        raise ValueError(f"not a quantity: {value!r}")
    return Decimal(match.group(1)) * suffixes.get(match.group(2), Decimal(1))


def config_maps_of(objects: list[Obj], workload: Obj) -> list[dict[str, str]]:
    """The data of every ConfigMap a workload's containers load with envFrom."""
    names = {
        source["configMapRef"]["name"]
        for container in containers(workload)
        for source in container.get("envFrom", [])
        if "configMapRef" in source
    }
    return [cm.get("data", {}) for cm in of_kind(objects, "ConfigMap") if cm["metadata"]["name"] in names]


def container_env(objects: list[Obj], workload: Obj, container: Obj) -> dict[str, str]:
    """Literal environment of a container: envFrom ConfigMaps, then its own ``value``s."""
    env: dict[str, str] = {}
    for data in config_maps_of(objects, workload):
        env.update(data)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def secret_data(secret: Obj) -> dict[str, str]:
    data = {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


# ---------------------------------------------------------------- alert rules
RULES = K8S / "components" / "monitoring" / "prometheus-rules.yaml"


def promtool_test_rules(case: Mapping[str, Any], path: Path) -> None:
    """``promtool test rules`` on ``case`` (a rule test file's content, written to ``path``):
    passes when every test of it passes. Skipped without promtool (Debian's package
    ``prometheus``), a failure under CI=true."""
    import shutil

    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool is not installed (apt-get install prometheus)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}\nCI=true: the alert rules must be tested", pytrace=False)
        pytest.skip(message)
    path.write_text(yaml.safe_dump(dict(case), sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
