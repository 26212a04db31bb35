"""Make a rendered kustomize overlay playable by ``podman kube play`` (podman 4.3).

``podman kube play`` runs Pods, Deployments and a few other kinds on one machine, but
podman 4.3 (Debian bookworm's) has gaps that the manifests meet. This module converts
a copy of the rendered objects, one rule per gap; the manifests themselves stay as a
cluster reads them:

- **Secrets**: a Secret volume crashes ``kube play`` and a ``secretKeyRef`` value is
  parsed as JSON. Each Secret becomes a ConfigMap holding its decoded values;
  ``secretKeyRef`` becomes ``configMapKeyRef`` and a ``secret`` volume a ``configMap``
  volume (same items and mode).
- **Names are global on the machine**: ConfigMaps (``kube play`` makes a volume of each),
  claims and emptyDirs (an emptyDir becomes a named volume shared by every pod that has
  one of the same name) get the run's prefix, and an emptyDir the pod's name too, so
  two runs, or two pods, never share one.
- **Deployments do not resolve by Service name**: each workload is played as one Pod,
  named ``<run>-<workload>``, whose network aliases are the names of the Services
  selecting it (``podman kube play --network NET:alias=A,alias=B``, a network with DNS).
- **StatefulSet and Job are ignored**: a StatefulSet becomes one Pod per replica, as a
  cluster makes them: ordinal ``i`` is ``<run>-<name>-<i>`` with the host name
  ``<name>-<i>`` (the pod name a StatefulSet gives it, from which Risk reads its
  ordinal), a PersistentVolumeClaim per claim template, and besides the Services'
  names the stable DNS names its governing Service gives it
  (``<name>-<i>.<service>``, ``....<namespace>.svc``, ``....svc.cluster.local``);
  a Job becomes a Pod with ``restartPolicy: OnFailure`` (the Job's retries).
- **containerPort is published on the same host port**: every port gets
  ``hostIP: 127.0.0.1`` and a host port of the caller's choosing (free, per run).
- **A volume at /var/run/... takes the host's owner** (``/var/run`` is a symlink to
  ``/run`` in the image, so the copy-up misses the image's directory): such mounts move
  to ``/run/...``.
- **Probes are dropped** (gRPC probes are not supported; exec probes become
  health checks with other semantics): they are removed and returned, so the caller
  probes as the kubelet would.
- **Images** are replaced as the caller maps them (locally built stand-ins).

Everything else (Services, ServiceAccounts, disruption budgets, autoscalers, network
policies, the Namespace) has no meaning to ``kube play`` and is listed as dropped.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

Obj = dict[str, Any]

#: Probe kinds in the order the kubelet runs them.
PROBE_KINDS = ("startupProbe", "readinessProbe", "livenessProbe")
#: Workload kinds played as a Pod.
WORKLOADS = ("Deployment", "StatefulSet", "Job", "Pod")


@dataclass
class PlayablePod:
    """One workload, as a ``kube play`` document set: its claims, then the Pod."""

    workload: str  # the workload's own name (e.g. "oms", "tessera-migrate")
    kind: str  # Deployment, StatefulSet, Job, Pod
    name: str  # the Pod's name: "<run>-<workload>" ("<run>-<workload>-<ordinal>" for a StatefulSet)
    aliases: list[str]  # the names it answers to on the network (Services', a StatefulSet pod's own)
    documents: list[Obj]  # the ConfigMaps it reads, its PersistentVolumeClaims, then the Pod
    probes: dict[str, dict[str, Obj]]  # container -> probe kind -> probe
    host_ports: dict[tuple[str, int], int]  # (container, containerPort) -> host port on 127.0.0.1
    volumes: list[str]  # podman volume names this pod creates (claims, emptyDirs)
    ordinal: int | None = None  # a StatefulSet pod's ordinal

    @property
    def alias(self) -> str | None:
        """The first name it answers to (a selecting Service's), if any."""
        return self.aliases[0] if self.aliases else None

    @property
    def network_option(self) -> str:
        """What follows ``--network NET`` in ``podman kube play``: ``:alias=A,alias=B``."""
        return ":" + ",".join(f"alias={alias}" for alias in self.aliases) if self.aliases else ""

    @property
    def pod(self) -> Obj:
        return self.documents[-1]

    def container(self, name: str) -> Obj:
        return next(c for c in self.pod["spec"]["containers"] if c["name"] == name)

    def containers(self) -> list[str]:
        return [c["name"] for c in self.pod["spec"]["containers"]]

    def podman_container(self, container: str) -> str:
        """The name ``kube play`` gives the container: ``<pod>-<container>``."""
        return f"{self.name}-{container}"

    def host_port(self, container: str, port: int | str) -> int:
        """The host port published for a container port, by number or by name."""
        if isinstance(port, str):
            port = next(p["containerPort"] for p in self.container(container).get("ports", []) if p.get("name") == port)
        return self.host_ports[(container, int(port))]


@dataclass
class Playbook:
    """The converted overlay: every ConfigMap, and one entry per workload."""

    run: str
    config_maps: list[Obj]
    pods: list[PlayablePod]
    dropped: list[str] = field(default_factory=list)  # "Kind/name" of objects kube play cannot use
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # the Secrets' decoded values

    def pod(self, workload: str, ordinal: int | None = None) -> PlayablePod:
        """The workload's pod (a StatefulSet's: ordinal 0 unless ``ordinal`` says)."""
        return next(p for p in self.pods if p.workload == workload and (ordinal is None or p.ordinal == ordinal))

    def replicas(self, workload: str) -> list[PlayablePod]:
        """Every pod of a workload (a StatefulSet's in ordinal order)."""
        return [p for p in self.pods if p.workload == workload]

    def volumes(self) -> list[str]:
        """Every podman volume the play creates: ConfigMaps' and each pod's."""
        return [cm["metadata"]["name"] for cm in self.config_maps] + [v for p in self.pods for v in p.volumes]


def decode_secret(secret: Obj) -> dict[str, str]:
    """A Secret's values as text (``data`` is base64, ``stringData`` plain)."""
    values = {key: base64.b64decode(value or "").decode() for key, value in (secret.get("data") or {}).items()}
    values.update(secret.get("stringData") or {})
    return values


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def _pod_template(obj: Obj) -> Obj:
    return obj if obj["kind"] == "Pod" else obj["spec"]["template"]


def _instances(objects: Iterable[Obj]) -> Iterable[tuple[Obj, int | None]]:
    """Each object with the ordinal of each pod it is played as: one per replica of a
    StatefulSet, None for anything else; -1 for a workload scaled to zero (dropped)."""
    for obj in objects:
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        if obj["kind"] in ("Deployment", "StatefulSet") and replicas == 0:
            yield obj, -1
        elif obj["kind"] == "StatefulSet":
            for ordinal in range(replicas):
                yield obj, ordinal
        else:
            yield obj, None


def convert(
    objects: Iterable[Obj],
    *,
    run: str,
    host_port: Callable[[str, str, int], int],
    images: Mapping[str, str] | None = None,
) -> Playbook:
    """Convert rendered objects into what ``podman kube play`` (4.3) runs as intended.

    Parameters
    ----------
    objects
        The rendered overlay (``kubectl kustomize`` output, parsed). Not modified.
    run
        A prefix unique to this run (lower-case letters, digits, ``-``): every name
        that podman keeps machine-wide starts with it.
    host_port
        ``host_port(workload, container, containerPort)``: the host port to publish
        that container port on, on 127.0.0.1 (``workload`` is ``<name>-<ordinal>`` for
        a StatefulSet's pods, so each replica gets its own).
    images
        Image references to replace (``{"tessera:dev": "localhost/tessera:abc"}``);
        others stay as they are.

    Returns
    -------
    Playbook
        ConfigMaps and playable pods, in the order of ``objects``.

    Raises
    ------
    ValueError
        When a reference cannot be converted: a Secret or ConfigMap that the overlay
        does not render, or a workload kind ``kube play`` cannot be made to run.
    """
    objects = [copy.deepcopy(o) for o in objects]
    images = dict(images or {})
    secrets = {o["metadata"]["name"]: decode_secret(o) for o in objects if o["kind"] == "Secret"}
    config_maps = {o["metadata"]["name"]: dict(o.get("data") or {}) for o in objects if o["kind"] == "ConfigMap"}
    renamed = {name: f"{run}-{name}" for name in [*config_maps, *secrets]}
    services = [o for o in objects if o["kind"] == "Service"]

    book = Playbook(run=run, config_maps=[], pods=[], secrets=secrets)
    for name, data in [*config_maps.items(), *secrets.items()]:
        book.config_maps.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": renamed[name]}, "data": data}
        )

    converted = {cm["metadata"]["name"]: cm for cm in book.config_maps}
    read: list[str] = []  # the converted ConfigMaps the current workload reads

    def config_map_name(name: str, kind: str) -> str:
        known = secrets if kind == "Secret" else config_maps
        if name not in known:
            raise ValueError(f"{kind} {name} is referenced but not rendered by the overlay")
        if renamed[name] not in read:
            read.append(renamed[name])
        return renamed[name]

    for obj, ordinal in _instances(objects):
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in ("Secret", "ConfigMap"):
            continue
        if kind not in WORKLOADS or ordinal == -1:
            book.dropped.append(f"{kind}/{name}")
            continue
        template = copy.deepcopy(_pod_template(obj))
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        aliases = [s["metadata"]["name"] for s in services if _selects(s["spec"].get("selector") or {}, labels)]
        instance = name if ordinal is None else f"{name}-{ordinal}"
        pod_name = f"{run}-{instance}"
        spec = template["spec"]
        read.clear()
        claims: list[Obj] = []
        volumes: list[str] = []

        if kind == "StatefulSet":
            spec["hostname"] = instance  # a StatefulSet pod's host name is its pod name
            governing = obj["spec"].get("serviceName")
            if governing in aliases:
                namespace = obj["metadata"].get("namespace")
                stable = f"{instance}.{governing}"
                aliases += [stable] + ([f"{stable}.{namespace}.svc", f"{stable}.{namespace}.svc.cluster.local"]
                                       if namespace else [])
            for claim in obj["spec"].get("volumeClaimTemplates") or []:
                claim_name = f"{run}-{claim['metadata']['name']}-{instance}"
                claims.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                               "metadata": {"name": claim_name}, "spec": claim["spec"]})
                spec.setdefault("volumes", []).append(
                    {"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim_name}}
                )
                volumes.append(claim_name)
        if kind == "Job":
            spec["restartPolicy"] = "OnFailure"

        local_names: dict[str, str] = {}  # the pod's volume name -> the unique one
        for volume in spec.get("volumes") or []:
            if "secret" in volume:
                source = volume.pop("secret")
                volume["configMap"] = {
                    "name": config_map_name(source["secretName"], "Secret"),
                    **{k: v for k, v in source.items() if k in ("items", "defaultMode", "optional")},
                }
            elif "configMap" in volume:
                volume["configMap"]["name"] = config_map_name(volume["configMap"]["name"], "ConfigMap")
            elif "emptyDir" in volume:
                unique = f"{pod_name}-{volume['name']}"
                local_names[volume["name"]] = unique
                volume["name"] = unique
                volumes.append(unique)
            elif "persistentVolumeClaim" in volume and not volume["persistentVolumeClaim"]["claimName"].startswith(
                f"{run}-"
            ):
                raise ValueError(f"{kind}/{name}: a claim outside a StatefulSet's templates is not converted")

        probes: dict[str, dict[str, Obj]] = {}
        host_ports: dict[tuple[str, int], int] = {}
        for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
            container["image"] = images.get(container["image"], container["image"])
            for env in container.get("env") or []:
                source = env.get("valueFrom") or {}
                if "secretKeyRef" in source:
                    ref = source.pop("secretKeyRef")
                    source["configMapKeyRef"] = {**ref, "name": config_map_name(ref["name"], "Secret")}
                elif "configMapKeyRef" in source:
                    source["configMapKeyRef"]["name"] = config_map_name(source["configMapKeyRef"]["name"],
                                                                        "ConfigMap")
            for env_from in container.get("envFrom") or []:
                if "secretRef" in env_from:
                    ref = env_from.pop("secretRef")
                    env_from["configMapRef"] = {**ref, "name": config_map_name(ref["name"], "Secret")}
                elif "configMapRef" in env_from:
                    env_from["configMapRef"]["name"] = config_map_name(env_from["configMapRef"]["name"], "ConfigMap")
            for mount in container.get("volumeMounts") or []:
                mount["name"] = local_names.get(mount["name"], mount["name"])
                if mount["mountPath"] == "/var/run" or mount["mountPath"].startswith("/var/run/"):
                    mount["mountPath"] = mount["mountPath"][len("/var"):]
            for port in container.get("ports") or []:
                chosen = host_port(instance, container["name"], int(port["containerPort"]))
                port["hostIP"] = "127.0.0.1"
                port["hostPort"] = chosen
                host_ports[(container["name"], int(port["containerPort"]))] = chosen
            found = {kind_: container.pop(kind_) for kind_ in PROBE_KINDS if kind_ in container}
            if found:
                probes[container["name"]] = found

        pod_labels = {**labels, "tessera.io/deploy-run": run}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "labels": pod_labels,
                "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
            },
            "spec": spec,
        }
        book.pods.append(PlayablePod(
            workload=name, kind=kind, name=pod_name, aliases=aliases, ordinal=ordinal,
            # podman 4.3's --configmap reads one ConfigMap per file: each pod's play
            # carries the ones it reads (a second play reuses the volume of the first).
            documents=[*(converted[n] for n in read), *claims, pod],
            probes=probes, host_ports=host_ports, volumes=volumes,
        ))
    return book


__all__ = ["PROBE_KINDS", "PlayablePod", "Playbook", "convert", "decode_secret"]
