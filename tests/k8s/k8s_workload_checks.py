"""Invariants of the rendered workloads: probes, pod security, resources, disruption
budgets, autoscalers, the single Exchange, Risk's shards, service accounts and wiring,
the migration.

Each ``check_*`` takes one overlay's rendered objects and returns its problems, one
readable line each; an empty list means the invariant holds."""

from __future__ import annotations

from collections import Counter
from typing import Any

from k8s_manifests import (
    SERVICES,
    METRICS_PORTS,
    AUTOSCALED,
    SHARDED,
    MIGRATION_JOB,
    Obj,
    ref,
    of_kind,
    named,
    service_workload,
    long_running,
    workloads,
    pod_spec,
    pod_labels,
    containers,
    container_ports,
    selector_matches,
    parse_quantity,
    container_env,
)


def check_grpc_probes(objects: list[Obj]) -> list[str]:
    """Every long-running Tessera workload's containers have gRPC liveness and readiness
    probes on a port the container declares (and a startup probe, if any, is gRPC on that
    port too)."""
    problems = []
    for deployment in long_running(objects):
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
    """Exactly one PodDisruptionBudget covers each long-running Tessera workload's pods."""
    problems = []
    budgets = of_kind(objects, "PodDisruptionBudget")
    for deployment in long_running(objects):
        covering = [pdb for pdb in budgets if selector_matches(pdb["spec"].get("selector"), pod_labels(deployment))]
        if len(covering) != 1:
            problems.append(f"{ref(deployment)}: covered by {len(covering)} PodDisruptionBudgets, expected 1")
    for pdb in budgets:
        if not any(selector_matches(pdb["spec"].get("selector"), pod_labels(w)) for w in workloads(objects)):
            problems.append(f"{ref(pdb)}: selects no workload")
    return problems


def check_autoscalers(objects: list[Obj], min_replicas: int) -> list[str]:
    """Autoscalers exist for the OMS only (never for Risk, whose replica count is its
    shard count), with at least ``min_replicas``; the Deployments they scale set no
    replica count of their own."""
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
    """Tessera's workloads give SIGTERM's drain (mark NOT_SERVING, stop with grace) time to run."""
    return [
        f"{ref(d)}: terminationGracePeriodSeconds {pod_spec(d).get('terminationGracePeriodSeconds', 30)} < {minimum}"
        for d in long_running(objects)
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
        deployment = service_workload(objects, name)
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
            # The gRPC port, and the metrics port (named "metrics") for Prometheus.
            expected = METRICS_PORTS[name] if svc_port.get("name") == "metrics" else port
            if resolved != expected or svc_port["port"] != expected:
                problems.append(f"Service/{name}: port {svc_port['port']} -> {target} does not reach {expected}")
    oms = service_workload(objects, "oms")
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


def check_metrics_wiring(objects: list[Obj]) -> list[str]:
    """Each service serves /metrics on its documented port: the port variable, a
    container port named ``metrics``, and the pod's ``prometheus.io`` annotations agree."""
    problems = []
    for name, port in METRICS_PORTS.items():
        deployment = service_workload(objects, name)
        container = containers(deployment, init=False)[0]
        env = container_env(objects, deployment, container)
        variable = f"TESSERA_{name.upper()}_METRICS_PORT"
        if env.get(variable) != str(port):
            problems.append(f"{ref(deployment)}: {variable} is {env.get(variable)!r}, expected {port}")
        if container_ports(container).get("metrics") != port:
            problems.append(f"{ref(deployment)}: no containerPort {port} named metrics")
        annotations = deployment["spec"]["template"].get("metadata", {}).get("annotations", {})
        wanted = {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}
        for key, value in wanted.items():
            if annotations.get(key) != value:
                problems.append(f"{ref(deployment)}: pod annotation {key} is {annotations.get(key)!r}, expected {value!r}")
    return problems


def check_risk_shards(objects: list[Obj]) -> list[str]:
    """Risk is a StatefulSet whose replica count is its shard count: ``TESSERA_RISK_SHARDS``
    equals ``spec.replicas``; the ordinal comes from each pod (no literal
    ``TESSERA_RISK_SHARD``, which would give every pod the same one); the governing
    Service is rendered, headless, selects the pods and serves the gRPC port; and
    ``TESSERA_RISK_PEERS``, as Risk itself reads it on every pod, names each ordinal's
    stable DNS name (``<pod>.<headless service>.<namespace>.svc``) on that port."""
    from services.common.config import ConfigError
    from services.risk.sharding import Sharding

    try:
        risk = named(objects, "StatefulSet", SHARDED)
    except KeyError:
        return [f"Risk is not a StatefulSet named {SHARDED}"]
    problems = []
    replicas = risk["spec"].get("replicas", 1)
    container = containers(risk, init=False)[0]
    env = container_env(objects, risk, container)
    if env.get("TESSERA_RISK_SHARDS") != str(replicas):
        problems.append(f"{ref(risk)}: TESSERA_RISK_SHARDS is {env.get('TESSERA_RISK_SHARDS')!r}, "
                        f"but it runs {replicas} replicas")
    if "TESSERA_RISK_SHARD" in env:  # a literal (the downward API's pod-index label would be fine)
        problems.append(f"{ref(risk)}: sets TESSERA_RISK_SHARD to {env['TESSERA_RISK_SHARD']!r} for every pod; "
                        "each pod's ordinal must come from its name")
    governing = risk["spec"].get("serviceName")
    service = next((s for s in of_kind(objects, "Service") if s["metadata"]["name"] == governing), None)
    port = SERVICES[SHARDED]
    if service is None:
        problems.append(f"{ref(risk)}: its serviceName {governing!r} is not a rendered Service")
    else:
        if service["spec"].get("clusterIP") != "None":
            problems.append(f"{ref(service)}: the StatefulSet's governing Service must be headless (clusterIP: None)")
        if not selector_matches({"matchLabels": service["spec"].get("selector", {})}, pod_labels(risk)):
            problems.append(f"{ref(service)}: does not select {ref(risk)}'s pods")
        if port not in [p["port"] for p in service["spec"].get("ports", [])]:
            problems.append(f"{ref(service)}: does not serve port {port}")
    namespace = risk["metadata"].get("namespace")
    for ordinal in range(replicas):
        pod = f"{risk['metadata']['name']}-{ordinal}"
        try:
            sharding = Sharding.from_env(env, hostname=pod)
        except ConfigError as error:
            problems.append(f"{ref(risk)}: pod {pod} would not start: {error}")
            continue
        expected = f"{pod}.{governing}.{namespace}.svc:{port}"
        if sharding.shard != ordinal or sharding.shards != replicas:
            problems.append(f"{ref(risk)}: pod {pod} would be replica {sharding.shard} of {sharding.shards}")
        if sharding.peers != tuple(f"{risk['metadata']['name']}-{i}.{governing}.{namespace}.svc:{port}"
                                   for i in range(replicas)):
            problems.append(f"{ref(risk)}: pod {pod} reads the peers {list(sharding.peers)}, expected "
                            f"{expected} and its siblings")
            break
    return problems
