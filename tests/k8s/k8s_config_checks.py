"""Invariants of what the workloads are configured with: the Secrets and ConfigMaps they
use exist with the keys they read, no real secret is rendered or committed, and one
image tag runs everywhere.

Each ``check_*`` takes one overlay's rendered objects and returns its problems, one
readable line each; an empty list means the invariant holds."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from k8s_manifests import (
    K8S,
    SERVICES,
    MIGRATION_JOB,
    EXTERNAL_SECRETS,
    DEV_ONLY_MARKER,
    TESSERA_IMAGE,
    Obj,
    ref,
    of_kind,
    named,
    service_workload,
    image_repository,
    workloads,
    pod_spec,
    containers,
    container_env,
    secret_data,
)


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
    config_map_keys = {cm["metadata"]["name"]: set(cm.get("data") or {}) for cm in of_kind(objects, "ConfigMap")}
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
                config_map = volumes.get(mount["name"], {}).get("configMap")
                if config_map is not None:  # a file of configuration (the entitlements): a ConfigMap's key
                    if config_map["name"] not in config_maps:
                        problems.append(f"{ref(workload)}: mounts ConfigMap/{config_map['name']}, not rendered")
                    mounted[mount["mountPath"].rstrip("/")] = config_map_keys.get(config_map["name"], set())
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
                        "is not a file of a Secret (or ConfigMap) mounted there"
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
            if image_repository(image) == TESSERA_IMAGE:
                tessera_images.add(image)
    for name in [*SERVICES, MIGRATION_JOB]:
        try:
            workload = named(objects, "Job", name) if name == MIGRATION_JOB else service_workload(objects, name)
        except KeyError:
            continue
        if image_repository(containers(workload, init=False)[0]["image"]) != TESSERA_IMAGE:
            problems.append(f"{ref(workload)}: does not run the {TESSERA_IMAGE} image")
    if len(tessera_images) != 1:
        problems.append(f"the Tessera image differs across objects: {sorted(tessera_images)}")
    return problems
