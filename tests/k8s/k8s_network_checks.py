"""Invariants of the NetworkPolicies, evaluated the way Kubernetes does: a pod is
isolated for a direction once any policy selecting it names that direction, and then
admits only what some rule of those policies allows.

Each ``check_*`` takes one overlay's rendered objects and returns its problems, one
readable line each; an empty list means the invariant holds."""

from __future__ import annotations

from collections.abc import Mapping

from k8s_manifests import (
    SERVICES,
    METRICS_PORTS,
    METRICS_SCRAPER_PEER,
    DATABASE_CLIENTS,
    Obj,
    ref,
    of_kind,
    named,
    service_workload,
    SHARDED,
    workloads,
    pod_labels,
    pod_spec,
    containers,
    container_env,
    selector_matches,
)


def _policies_for(objects: list[Obj], labels: Mapping[str, str], direction: str) -> list[Obj]:
    return [
        policy
        for policy in of_kind(objects, "NetworkPolicy")
        if direction in policy["spec"].get("policyTypes", ["Ingress"])
        and selector_matches(policy["spec"].get("podSelector"), labels)
    ]


def is_metrics_rule(rule: Mapping, target: Obj) -> bool:
    """The one wider rule allowed: ``target``'s own metrics port only, from the
    monitoring namespace's scraper pods only (checked by :func:`check_metrics_ingress`)."""
    port = METRICS_PORTS.get(target["metadata"]["name"])
    ports = rule.get("ports") or []
    peers = rule.get("from") or []
    return (
        port is not None
        and bool(ports) and all(p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports)
        and bool(peers) and all(peer == METRICS_SCRAPER_PEER for peer in peers)
    )


def ingress_sources(objects: list[Obj], target: Obj) -> tuple[set[str], list[str]]:
    """Which rendered workloads may open connections to ``target``'s pods, and on which
    ports; plus every rule that admits more than pods of this namespace (a missing
    ``from``, an ``ipBlock`` or a ``namespaceSelector``), as a problem."""
    sources: set[str] = set()
    wide: list[str] = []
    for policy in _policies_for(objects, pod_labels(target), "Ingress"):
        for rule in policy["spec"].get("ingress", []):
            if is_metrics_rule(rule, target):
                continue
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
        selects_all = spec.get("podSelector") in ({}, None)
        if selects_all and "Ingress" in spec.get("policyTypes", []) and not spec.get("ingress"):
            return []
    return ["no default-deny ingress NetworkPolicy (podSelector: {}, policyTypes: [Ingress], no rules)"]


def check_exchange_isolation(objects: list[Obj]) -> list[str]:
    """Only OMS pods, only on the Exchange port, reach the Exchange."""
    exchange = service_workload(objects, "exchange")
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
        deployment = service_workload(objects, name)
        ports = {
            str(p.get("port"))
            for policy in _policies_for(objects, pod_labels(deployment), "Ingress")
            for rule in policy["spec"].get("ingress", [])
            if not is_metrics_rule(rule, deployment)
            for p in rule.get("ports", [{"port": "any"}])
        }
        if ports != {str(SERVICES[name])}:
            problems.append(f"{ref(deployment)}: ingress allowed on ports {sorted(ports)}, expected {SERVICES[name]}")
    return problems


def check_risk_peers(objects: list[Obj]) -> list[str]:
    """The Risk replicas reach each other's gRPC port (a request for an account another
    replica owns is forwarded there): Risk admits Risk pods on it, and may send to them."""
    risk = service_workload(objects, SHARDED)
    port = SERVICES[SHARDED]
    labels = pod_labels(risk)
    problems = []
    sources, _ = ingress_sources(objects, risk)
    if f"{SHARDED}:{port}" not in sources:
        problems.append(f"{ref(risk)}: admits {sorted(sources)}, not its own replicas on {port}")
    sending = any(
        p.get("port") == port
        for policy in _policies_for(objects, labels, "Egress")
        for rule in policy["spec"].get("egress", [])
        if any(selector_matches(peer.get("podSelector"), labels) and "namespaceSelector" not in peer
               and "ipBlock" not in peer for peer in rule.get("to", []))
        for p in rule.get("ports", [])
    )
    if not sending:
        problems.append(f"{ref(risk)}: no egress to its own replicas on {port}")
    return problems


def check_database_access(objects: list[Obj]) -> list[str]:
    """Risk, OMS, the Exchange and the migration Job are the database's clients: they carry the label
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


def check_metrics_ingress(objects: list[Obj]) -> list[str]:
    """Prometheus can scrape each service: some rule admits its metrics port, and every
    rule that admits that port admits only it, and only from the monitoring namespace's
    scraper pods (both selectors in one peer)."""
    problems = []
    for name, port in METRICS_PORTS.items():
        deployment = service_workload(objects, name)
        scrapable = False
        for policy in _policies_for(objects, pod_labels(deployment), "Ingress"):
            for rule in policy["spec"].get("ingress", []):
                ports = [p.get("port") for p in rule.get("ports", [])]
                if is_metrics_rule(rule, deployment):
                    scrapable = True
                elif not ports or port in ports:
                    problems.append(f"{ref(policy)}: admits {ref(deployment)}'s metrics port {port} more widely "
                                    f"than from {METRICS_SCRAPER_PEER}")
        if not scrapable:
            problems.append(f"{ref(deployment)}: no rule admits Prometheus to its metrics port {port}")
    return problems


def _secret_file(workload: Obj, container: Obj, path: str) -> str | None:
    """The Secret a file path of ``container`` is mounted from, or None."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if path.startswith(mount["mountPath"].rstrip("/") + "/"):
            secret = volumes.get(mount["name"], {}).get("secret")
            return secret["secretName"] if secret else None
    return None


def check_exchange_mtls(objects: list[Obj], *, required: bool) -> list[str]:
    """With ``required`` (prod): the Exchange's gRPC port speaks TLS and demands a client
    certificate (server certificate, key and client CA, each a file from a mounted
    Secret), its probes use the plaintext health port, and the OMS dials it over TLS with
    a client certificate (CA, certificate and key from a mounted Secret). Without: any
    TLS set-up present is still complete."""
    problems: list[str] = []
    exchange = service_workload(objects, "exchange")
    oms = service_workload(objects, "oms")
    exchange_container = containers(exchange, init=False)[0]
    oms_container = containers(oms, init=False)[0]
    exchange_env = container_env(objects, exchange, exchange_container)
    oms_env = container_env(objects, oms, oms_container)
    server = {name: exchange_env.get(f"TESSERA_TLS_{name}_FILE") for name in ("CERT", "KEY", "CA")}
    client = {name: oms_env.get(f"TESSERA_EXCHANGE_TLS_{name}_FILE") or oms_env.get(f"TESSERA_TLS_{name}_FILE")
              for name in ("CA", "CERT", "KEY")}
    if not required and not any(server.values()) and not any(client.values()):
        return []
    for side, workload, container, files in (("Exchange", exchange, exchange_container, server),
                                             ("OMS", oms, oms_container, client)):
        for name, path in files.items():
            if not path:
                problems.append(f"{ref(workload)}: no {name} file for mutual TLS ({side} side)")
            elif _secret_file(workload, container, path) is None:
                problems.append(f"{ref(workload)}: {path} is not in a mounted Secret")
    health = exchange_env.get("TESSERA_EXCHANGE_HEALTH_PORT") or exchange_env.get("TESSERA_HEALTH_PORT")
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        port = (exchange_container.get(kind) or {}).get("grpc", {}).get("port")
        if port is not None and str(port) != str(health):
            problems.append(f"{ref(exchange)}: {kind} probes port {port}, not the plaintext health port "
                            f"({health or 'unset'}): the kubelet presents no client certificate")
    return problems
