"""Rendering Tessera's kustomize overlays and checking the invariants of the result.

Each ``check_*`` function takes the rendered objects of one overlay and returns a list
of problems, one readable line each (empty: the invariant holds). The tests assert
that the real overlays have none, and that a deliberately broken copy has some, so a
check can never silently stop biting.

The renderer is the pinned ``kubectl`` that ``make tools`` installs into ``.tools/``
(``TESSERA_KUBECTL`` overrides it); the schemas are those ``kubernetes-validate``
ships, so nothing here needs a cluster or the network.
"""

from __future__ import annotations

import base64
import math
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
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
AUTOSCALED = {"risk", "oms"}
DATABASE_CLIENTS = {"risk", "oms", "tessera-migrate"}
MIGRATION_JOB = "tessera-migrate"
#: Secrets an overlay may reference without rendering them: the prod overlay expects
#: them to exist (README.md, "Operations"), with these keys.
EXTERNAL_SECRETS = {
    "tessera-hmac": {"current", "current-key-id", "previous", "previous-key-id"},
    "tessera-venue": {"api-key", "api-secret"},
    "tessera-database": {"url"},
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


# ---------------------------------------------------------------- invariants


def check_grpc_probes(objects: list[Obj]) -> list[str]:
    """Every Deployment's containers have gRPC liveness and readiness probes on a port
    the container declares (and a startup probe, if any, is gRPC on that port too)."""
    problems = []
    for deployment in of_kind(objects, "Deployment"):
        for container in containers(deployment, init=False):
            where = f"{ref(deployment)} container {container['name']}"
            ports = set(container_ports(container).values())
            if not ports:
                problems.append(f"{where}: declares no containerPort")
            for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = container.get(kind)
                if probe is None:
                    if kind != "startupProbe":
                        problems.append(f"{where}: no {kind}")
                    continue
                port = (probe.get("grpc") or {}).get("port")
                if port is None:
                    problems.append(f"{where}: {kind} is not a native gRPC probe")
                elif port not in ports:
                    problems.append(f"{where}: {kind} probes port {port}, the container listens on {sorted(ports)}")
    return problems


def check_pod_security(objects: list[Obj]) -> list[str]:
    """Non-root (numeric uid), read-only root file system, no privilege escalation, all
    capabilities dropped, RuntimeDefault seccomp, no service account token."""
    problems = []
    for workload in workloads(objects):
        spec = pod_spec(workload)
        pod_context = spec.get("securityContext", {})
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{ref(workload)}: automountServiceAccountToken is not false")
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                problems.append(f"{ref(workload)}: {flag} is set")
        for container in containers(workload):
            where = f"{ref(workload)} container {container['name']}"
            context = container.get("securityContext", {})

            def effective(key: str) -> Any:
                return context.get(key, pod_context.get(key))

            if effective("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            uid = effective("runAsUser")
            if not isinstance(uid, int) or uid == 0:
                problems.append(f"{where}: runAsUser must be a non-zero uid, got {uid!r}")
            if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile is not RuntimeDefault")
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if context.get("privileged"):
                problems.append(f"{where}: privileged")
            capabilities = context.get("capabilities", {})
            if "ALL" not in capabilities.get("drop", []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if capabilities.get("add"):
                problems.append(f"{where}: adds capabilities {capabilities['add']}")
    return problems


def check_resources(objects: list[Obj]) -> list[str]:
    """CPU and memory requests and limits on every container, requests within limits."""
    problems = []
    for workload in workloads(objects):
        for container in containers(workload):
            where = f"{ref(workload)} container {container['name']}"
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                if request is None or limit is None:
                    problems.append(f"{where}: {resource} needs both a request and a limit")
                elif parse_quantity(request) > parse_quantity(limit):
                    problems.append(f"{where}: {resource} request {request} exceeds its limit {limit}")
    return problems


def check_disruption_budgets(objects: list[Obj]) -> list[str]:
    """Exactly one PodDisruptionBudget covers each Deployment's pods."""
    problems = []
    budgets = of_kind(objects, "PodDisruptionBudget")
    for deployment in of_kind(objects, "Deployment"):
        covering = [pdb for pdb in budgets if selector_matches(pdb["spec"].get("selector"), pod_labels(deployment))]
        if len(covering) != 1:
            problems.append(f"{ref(deployment)}: covered by {len(covering)} PodDisruptionBudgets, expected 1")
    for pdb in budgets:
        if not any(selector_matches(pdb["spec"].get("selector"), pod_labels(w)) for w in workloads(objects)):
            problems.append(f"{ref(pdb)}: selects no workload")
    return problems


def check_autoscalers(objects: list[Obj], min_replicas: int) -> list[str]:
    """Autoscalers exist for Risk and OMS only, with at least ``min_replicas``; the
    Deployments they scale set no replica count of their own."""
    problems = []
    targets = Counter()
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        targets[target["name"]] += 1
        if target.get("kind") != "Deployment":
            problems.append(f"{ref(hpa)}: scales a {target.get('kind')}, expected a Deployment")
            continue
        try:
            deployment = named(objects, "Deployment", target["name"])
        except KeyError:
            problems.append(f"{ref(hpa)}: scales Deployment/{target['name']}, which is not rendered")
            continue
        if "replicas" in deployment["spec"]:
            problems.append(f"{ref(deployment)}: sets replicas although {ref(hpa)} owns them")
        if hpa["spec"].get("minReplicas", 1) < min_replicas:
            problems.append(f"{ref(hpa)}: minReplicas {hpa['spec'].get('minReplicas', 1)} < {min_replicas}")
        if hpa["spec"]["maxReplicas"] < hpa["spec"].get("minReplicas", 1):
            problems.append(f"{ref(hpa)}: maxReplicas below minReplicas")
    if set(targets) != AUTOSCALED:
        problems.append(f"autoscaled Deployments are {sorted(targets)}, expected {sorted(AUTOSCALED)}")
    problems += [f"Deployment/{name}: {count} autoscalers" for name, count in targets.items() if count > 1]
    return problems


def check_exchange_singleton(objects: list[Obj]) -> list[str]:
    """One active Exchange per venue account: one replica, Recreate, no autoscaler."""
    exchange = named(objects, "Deployment", "exchange")
    problems = []
    if exchange["spec"].get("replicas") != 1:
        problems.append(f"Deployment/exchange: replicas is {exchange['spec'].get('replicas')}, must be 1")
    if exchange["spec"].get("strategy", {}).get("type") != "Recreate":
        problems.append("Deployment/exchange: strategy must be Recreate (never two instances at once)")
    return problems


def check_termination_grace(objects: list[Obj], minimum: int = 10) -> list[str]:
    """Deployments give SIGTERM's drain (mark NOT_SERVING, stop with grace) time to run."""
    return [
        f"{ref(d)}: terminationGracePeriodSeconds {pod_spec(d).get('terminationGracePeriodSeconds', 30)} < {minimum}"
        for d in of_kind(objects, "Deployment")
        if pod_spec(d).get("terminationGracePeriodSeconds", 30) < minimum
    ]


def check_service_accounts(objects: list[Obj]) -> list[str]:
    """Each workload runs as its own ServiceAccount, rendered, with no token mounted."""
    problems = []
    accounts = {sa["metadata"]["name"]: sa for sa in of_kind(objects, "ServiceAccount")}
    used = Counter(pod_spec(w).get("serviceAccountName", "default") for w in workloads(objects))
    for workload in workloads(objects):
        name = pod_spec(workload).get("serviceAccountName", "default")
        if name not in accounts:
            problems.append(f"{ref(workload)}: ServiceAccount/{name} is not rendered")
        elif accounts[name].get("automountServiceAccountToken") is not False:
            problems.append(f"ServiceAccount/{name}: automountServiceAccountToken is not false")
        if used[name] > 1:
            problems.append(f"{ref(workload)}: shares ServiceAccount/{name} with another workload")
    return problems


def check_service_wiring(objects: list[Obj]) -> list[str]:
    """Each service listens on 0.0.0.0 and on the port its Service, probes and port
    variable agree on; the OMS's Exchange address is the Exchange Service."""
    problems = []
    services = {svc["metadata"]["name"]: svc for svc in of_kind(objects, "Service")}
    for name, port in SERVICES.items():
        deployment = named(objects, "Deployment", name)
        container = containers(deployment, init=False)[0]
        env = container_env(objects, deployment, container)
        if env.get("TESSERA_HOST") != "0.0.0.0":
            problems.append(f"{ref(deployment)}: TESSERA_HOST is {env.get('TESSERA_HOST')!r}, must be 0.0.0.0")
        if env.get(f"TESSERA_{name.upper()}_PORT") != str(port):
            problems.append(f"{ref(deployment)}: TESSERA_{name.upper()}_PORT is not {port}")
        if port not in container_ports(container).values():
            problems.append(f"{ref(deployment)}: does not declare containerPort {port}")
        if container.get("args", [None])[0] != name:
            problems.append(f"{ref(deployment)}: runs {container.get('args')}, expected [{name!r}]")
        service = services.get(name)
        if service is None:
            problems.append(f"Service/{name} is not rendered")
            continue
        if not selector_matches({"matchLabels": service["spec"].get("selector", {})}, pod_labels(deployment)):
            problems.append(f"Service/{name}: selector does not match {ref(deployment)}")
        for svc_port in service["spec"]["ports"]:
            target = svc_port.get("targetPort", svc_port["port"])
            resolved = container_ports(container).get(target) if isinstance(target, str) else target
            if resolved != port or svc_port["port"] != port:
                problems.append(f"Service/{name}: port {svc_port['port']} -> {target} does not reach {port}")
    oms = named(objects, "Deployment", "oms")
    address = container_env(objects, oms, containers(oms, init=False)[0]).get("TESSERA_EXCHANGE_ADDRESS", "")
    host, _, port_text = address.rpartition(":")
    exchange_service = services.get(host.split(".")[0])
    if exchange_service is None or int(port_text or 0) not in [p["port"] for p in exchange_service["spec"]["ports"]]:
        problems.append(f"Deployment/oms: TESSERA_EXCHANGE_ADDRESS {address!r} is not a rendered Service port")
    return problems


def check_migration_job(objects: list[Obj]) -> list[str]:
    """A Job runs the migrations against the database URL from a Secret."""
    try:
        job = named(objects, "Job", MIGRATION_JOB)
    except KeyError as error:
        return [str(error)]
    container = containers(job, init=False)[0]
    problems = []
    if container.get("args") != ["migrate"]:
        problems.append(f"{ref(job)}: runs {container.get('args')}, expected ['migrate']")
    urls = [item for item in container.get("env", []) if item["name"] == "TESSERA_DATABASE_URL"]
    if not urls or "secretKeyRef" not in urls[0].get("valueFrom", {}):
        problems.append(f"{ref(job)}: TESSERA_DATABASE_URL must come from a Secret")
    if pod_spec(job).get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append(f"{ref(job)}: restartPolicy must be Never or OnFailure")
    return problems


def _secret_references(workload: Obj) -> Iterator[tuple[str, str | None]]:
    """``(secret name, key or None)`` for every Secret a workload uses."""
    spec = pod_spec(workload)
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            yield volume["secret"]["secretName"], None
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                yield source["secret"]["name"], None
    for container in containers(workload):
        for item in container.get("env", []):
            key_ref = item.get("valueFrom", {}).get("secretKeyRef")
            if key_ref:
                yield key_ref["name"], key_ref["key"]
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                yield source["secretRef"]["name"], None
    for pull in spec.get("imagePullSecrets", []):
        yield pull["name"], None


def check_references(objects: list[Obj], *, external_secrets: bool) -> list[str]:
    """Every Secret and ConfigMap a workload uses is rendered with the keys it reads, or
    (``external_secrets``) is one of the documented, externally created Secrets. The
    ``*_FILE`` paths in the configuration name files of a Secret mounted there."""
    problems = []
    secrets = {s["metadata"]["name"]: set(secret_data(s)) for s in of_kind(objects, "Secret")}
    config_maps = {cm["metadata"]["name"] for cm in of_kind(objects, "ConfigMap")}
    for workload in workloads(objects):
        for name, key in _secret_references(workload):
            if name in secrets:
                keys = secrets[name]
            elif external_secrets and name in EXTERNAL_SECRETS:
                keys = EXTERNAL_SECRETS[name]
            else:
                problems.append(f"{ref(workload)}: uses Secret/{name}, which is neither rendered nor documented")
                continue
            if key is not None and key not in keys:
                problems.append(f"{ref(workload)}: reads key {key!r} of Secret/{name}, which has {sorted(keys)}")
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source and source["configMapRef"]["name"] not in config_maps:
                    problems.append(f"{ref(workload)}: uses ConfigMap/{source['configMapRef']['name']}, not rendered")
            mounted: dict[str, set[str]] = {}
            volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
            for mount in container.get("volumeMounts", []):
                secret = volumes.get(mount["name"], {}).get("secret")
                if secret is not None:
                    name = secret["secretName"]
                    keys = secrets.get(name) or (EXTERNAL_SECRETS.get(name, set()) if external_secrets else set())
                    mounted[mount["mountPath"].rstrip("/")] = keys
            for variable, value in container_env(objects, workload, container).items():
                if not variable.endswith("_FILE") or not value:
                    continue
                directory, _, file_name = value.rpartition("/")
                if file_name not in mounted.get(directory, set()):
                    problems.append(
                        f"{ref(workload)} container {container['name']}: {variable}={value} "
                        "is not a file of a Secret mounted there"
                    )
    return problems


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_like_a_secret(text: str) -> bool:
    """A long, high-entropy token of letters and digits: how keys and passwords look."""
    for token in re.findall(r"[A-Za-z0-9+/_-]{24,}", text):
        if DEV_ONLY_MARKER in token:
            continue
        digits, letters = len(re.findall(r"[0-9]", token)), len(re.findall(r"[A-Za-z]", token))
        if digits >= 2 and letters >= 2 and _entropy(token) >= 3.5:
            return True
    return False


def check_secret_values(objects: list[Obj], *, secrets_allowed: bool) -> list[str]:
    """Rendered Secret values are empty or marked dev-only; where Secrets are created out
    of band (``secrets_allowed`` false) none is rendered, so applying can never replace
    a real key."""
    problems = []
    for secret in of_kind(objects, "Secret"):
        if not secrets_allowed:
            problems.append(f"{ref(secret)}: rendered, but this overlay's Secrets are created out of band")
        for key, value in secret_data(secret).items():
            if value and DEV_ONLY_MARKER not in value:
                problems.append(f"{ref(secret)}: key {key!r} holds a value not marked {DEV_ONLY_MARKER!r}")
    return problems


def committed_secret_like_values(root: Path = K8S) -> list[str]:
    """Lines in the manifests' source files that look like a real key or password."""
    return [
        f"{path.relative_to(root.parent)}:{number}"
        for path in sorted(root.rglob("*"))
        if path.is_file()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if looks_like_a_secret(line)
    ]


def _image_repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def check_images(objects: list[Obj]) -> list[str]:
    """One Tessera image reference across every object, explicitly tagged; every image
    pinned to a tag other than ``latest`` (or a digest)."""
    problems = []
    tessera_images = set()
    for workload in workloads(objects):
        for container in containers(workload):
            image = container["image"]
            last = image.split("@", 1)[0].rsplit("/", 1)[-1]
            if "@" not in image and (":" not in last or last.endswith(":latest")):
                problems.append(f"{ref(workload)} container {container['name']}: image {image!r} has no fixed tag")
            if _image_repository(image) == TESSERA_IMAGE:
                tessera_images.add(image)
    for name in [*SERVICES, MIGRATION_JOB]:
        kind = "Job" if name == MIGRATION_JOB else "Deployment"
        try:
            workload = named(objects, kind, name)
        except KeyError:
            continue
        if _image_repository(containers(workload, init=False)[0]["image"]) != TESSERA_IMAGE:
            problems.append(f"{kind}/{name}: does not run the {TESSERA_IMAGE} image")
    if len(tessera_images) != 1:
        problems.append(f"the Tessera image differs across objects: {sorted(tessera_images)}")
    return problems


# ---------------------------------------------------------------- network policies


def _policies_for(objects: list[Obj], labels: Mapping[str, str], direction: str) -> list[Obj]:
    return [
        policy
        for policy in of_kind(objects, "NetworkPolicy")
        if direction in policy["spec"].get("policyTypes", ["Ingress"])
        and selector_matches(policy["spec"].get("podSelector"), labels)
    ]


def ingress_sources(objects: list[Obj], target: Obj) -> tuple[set[str], list[str]]:
    """Which rendered workloads may open connections to ``target``'s pods, and on which
    ports; plus every rule that admits more than pods of this namespace (a missing
    ``from``, an ``ipBlock`` or a ``namespaceSelector``), as a problem."""
    sources: set[str] = set()
    wide: list[str] = []
    for policy in _policies_for(objects, pod_labels(target), "Ingress"):
        for rule in policy["spec"].get("ingress", []):
            ports = sorted(str(p.get("port", "any")) for p in rule.get("ports", [])) or ["any"]
            peers = rule.get("from")
            if not peers:
                wide.append(f"{ref(policy)}: admits every source on ports {ports}")
                continue
            for peer in peers:
                if "ipBlock" in peer or "namespaceSelector" in peer:
                    wide.append(f"{ref(policy)}: admits {sorted(peer)} peers on ports {ports}")
                    continue
                for workload in workloads(objects):
                    if selector_matches(peer.get("podSelector"), pod_labels(workload)):
                        sources.add(f"{workload['metadata']['name']}:{','.join(ports)}")
    return sources, wide


def check_default_deny(objects: list[Obj]) -> list[str]:
    """A policy selects every pod of the namespace for ingress and admits nothing."""
    for policy in of_kind(objects, "NetworkPolicy"):
        spec = policy["spec"]
        if spec.get("podSelector") in ({}, None) and "Ingress" in spec.get("policyTypes", []) and not spec.get("ingress"):
            return []
    return ["no default-deny ingress NetworkPolicy (podSelector: {}, policyTypes: [Ingress], no rules)"]


def check_exchange_isolation(objects: list[Obj]) -> list[str]:
    """Only OMS pods, only on the Exchange port, reach the Exchange."""
    exchange = named(objects, "Deployment", "exchange")
    problems = check_default_deny(objects)
    sources, wide = ingress_sources(objects, exchange)
    problems += wide
    expected = {f"oms:{SERVICES['exchange']}"}
    if sources != expected:
        problems.append(f"the Exchange admits {sorted(sources)}, expected {sorted(expected)}")
    return problems


def check_client_ingress(objects: list[Obj]) -> list[str]:
    """Clients reach Risk and OMS on their own ports only."""
    problems = []
    for name in ("risk", "oms"):
        deployment = named(objects, "Deployment", name)
        ports = {
            str(p.get("port"))
            for policy in _policies_for(objects, pod_labels(deployment), "Ingress")
            for rule in policy["spec"].get("ingress", [])
            for p in rule.get("ports", [{"port": "any"}])
        }
        if ports != {str(SERVICES[name])}:
            problems.append(f"{ref(deployment)}: ingress allowed on ports {sorted(ports)}, expected {SERVICES[name]}")
    return problems


def check_database_access(objects: list[Obj]) -> list[str]:
    """Risk, OMS and the migration Job are the database's clients: they carry the label
    the database policies select, and an in-cluster PostgreSQL admits nothing else."""
    problems = []
    labelled = {
        w["metadata"]["name"] for w in workloads(objects) if pod_labels(w).get("tessera.io/database-client") == "true"
    }
    if labelled != DATABASE_CLIENTS:
        problems.append(f"database clients are {sorted(labelled)}, expected {sorted(DATABASE_CLIENTS)}")
    for statefulset in of_kind(objects, "StatefulSet"):
        if statefulset["metadata"]["name"] != "postgres":
            continue
        sources, wide = ingress_sources(objects, statefulset)
        problems += wide
        expected = {f"{name}:5432" for name in DATABASE_CLIENTS}
        if sources != expected:
            problems.append(f"PostgreSQL admits {sorted(sources)}, expected {sorted(expected)}")
    for client in DATABASE_CLIENTS:
        workload = next((w for w in workloads(objects) if w["metadata"]["name"] == client), None)
        if workload is None:
            continue
        egress = [
            p for policy in _policies_for(objects, pod_labels(workload), "Egress")
            for rule in policy["spec"].get("egress", []) for p in rule.get("ports", [])
        ]
        if not any(p.get("port") == 5432 for p in egress):
            problems.append(f"{ref(workload)}: no egress to PostgreSQL :5432")
    return problems


def check_venue_egress(objects: list[Obj], *, required: bool) -> list[str]:
    """Only the Exchange may leave the cluster on 443 (the venue), and only in prod."""
    problems = []
    for workload in workloads(objects):
        allowed = any(
            p.get("port") == 443
            for policy in _policies_for(objects, pod_labels(workload), "Egress")
            for rule in policy["spec"].get("egress", [])
            for p in rule.get("ports", [])
        )
        name = workload["metadata"]["name"]
        if allowed and name != "exchange":
            problems.append(f"{ref(workload)}: may reach port 443 outside the cluster")
        if name == "exchange" and allowed != required:
            problems.append(f"{ref(workload)}: venue egress on 443 is {'missing' if required else 'allowed'}")
    return problems
