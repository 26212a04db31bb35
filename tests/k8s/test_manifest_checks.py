"""The manifest checks bite: each one reports a problem on a rendered overlay that was
broken the way the check is meant to catch (and none on the overlay as it is)."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Callable

import pytest

import k8s_config_checks as config_checks
import k8s_manifests as km
import k8s_network_checks as network_checks
import k8s_workload_checks as workload_checks

Objects = list[dict]


def container_of(objects: Objects, kind: str, name: str) -> dict:
    return km.containers(km.named(objects, kind, name), init=False)[0]


def policy(objects: Objects, name: str) -> dict:
    return km.named(objects, "NetworkPolicy", name)


def drop_readiness_probe(objects: Objects) -> None:
    del container_of(objects, "Deployment", "oms")["readinessProbe"]


def probe_the_wrong_port(objects: Objects) -> None:
    container_of(objects, "StatefulSet", "risk")["livenessProbe"]["grpc"]["port"] = 50052


def probe_over_http(objects: Objects) -> None:
    probe = container_of(objects, "Deployment", "exchange")["livenessProbe"]
    probe["httpGet"] = {"port": probe.pop("grpc")["port"], "path": "/"}


def run_job_as_root(objects: Objects) -> None:
    job = km.named(objects, "Job", km.MIGRATION_JOB)
    km.pod_spec(job)["securityContext"]["runAsUser"] = 0
    container_of(objects, "Job", km.MIGRATION_JOB)["securityContext"]["runAsUser"] = 0


def allow_runs_as_root(objects: Objects) -> None:
    container_of(objects, "Deployment", "oms")["securityContext"]["runAsNonRoot"] = False


def writable_root_filesystem(objects: Objects) -> None:
    container_of(objects, "Deployment", "exchange")["securityContext"]["readOnlyRootFilesystem"] = False


def allow_privilege_escalation(objects: Objects) -> None:
    del container_of(objects, "StatefulSet", "risk")["securityContext"]["allowPrivilegeEscalation"]


def keep_capabilities(objects: Objects) -> None:
    container_of(objects, "StatefulSet", "risk")["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}


def mount_service_account_token(objects: Objects) -> None:
    km.pod_spec(km.named(objects, "Deployment", "oms"))["automountServiceAccountToken"] = True


def drop_job_limits(objects: Objects) -> None:
    del container_of(objects, "Job", km.MIGRATION_JOB)["resources"]["limits"]


def request_above_limit(objects: Objects) -> None:
    container_of(objects, "Deployment", "oms")["resources"]["requests"]["memory"] = "4Gi"


def drop_exchange_budget(objects: Objects) -> None:
    objects.remove(km.named(objects, "PodDisruptionBudget", "exchange"))


def autoscale_the_exchange(objects: Objects) -> None:
    hpa = copy.deepcopy(km.named(objects, "HorizontalPodAutoscaler", "oms"))
    hpa["metadata"]["name"] = "exchange"
    hpa["spec"]["scaleTargetRef"]["name"] = "exchange"
    objects.append(hpa)


def drop_oms_autoscaler(objects: Objects) -> None:
    objects.remove(km.named(objects, "HorizontalPodAutoscaler", "oms"))


def autoscale_risk(objects: Objects) -> None:
    hpa = copy.deepcopy(km.named(objects, "HorizontalPodAutoscaler", "oms"))
    hpa["metadata"]["name"] = "risk"
    hpa["spec"]["scaleTargetRef"].update(kind="StatefulSet", name="risk")
    objects.append(hpa)


def pin_autoscaled_replicas(objects: Objects) -> None:
    km.named(objects, "Deployment", "oms")["spec"]["replicas"] = 2


def one_autoscaled_replica(objects: Objects) -> None:
    km.named(objects, "HorizontalPodAutoscaler", "oms")["spec"]["minReplicas"] = 1


def two_exchanges(objects: Objects) -> None:
    km.named(objects, "Deployment", "exchange")["spec"]["replicas"] = 2


def roll_the_exchange(objects: Objects) -> None:
    km.named(objects, "Deployment", "exchange")["spec"]["strategy"] = {"type": "RollingUpdate"}


def short_grace_period(objects: Objects) -> None:
    km.pod_spec(km.named(objects, "StatefulSet", "risk"))["terminationGracePeriodSeconds"] = 5


def drop_risk_budget(objects: Objects) -> None:
    objects.remove(km.named(objects, "PodDisruptionBudget", "risk"))


def drop_risk_readiness_probe(objects: Objects) -> None:
    del container_of(objects, "StatefulSet", "risk")["readinessProbe"]


def risk_env(objects: Objects) -> list[dict]:
    return container_of(objects, "StatefulSet", "risk")["env"]


def scale_risk_without_its_shard_count(objects: Objects) -> None:
    km.named(objects, "StatefulSet", "risk")["spec"]["replicas"] += 1  # `kubectl scale`, or a patch of replicas alone


def shard_count_without_the_replicas(objects: Objects) -> None:
    next(item for item in risk_env(objects) if item["name"] == "TESSERA_RISK_SHARDS")["value"] = "1"


def pin_the_shard_ordinal(objects: Objects) -> None:
    risk_env(objects).append({"name": "TESSERA_RISK_SHARD", "value": "0"})


def peers_in_another_namespace(objects: Objects) -> None:
    peers = next(item for item in risk_env(objects) if item["name"] == "TESSERA_RISK_PEERS")
    peers["value"] = "risk-{ordinal}.risk-headless.default.svc:50051"


def peers_through_the_client_service(objects: Objects) -> None:
    peers = next(item for item in risk_env(objects) if item["name"] == "TESSERA_RISK_PEERS")
    peers["value"] = peers["value"].replace("risk-{ordinal}.risk-headless.", "risk.")


def governing_service_with_a_cluster_ip(objects: Objects) -> None:
    del km.named(objects, "Service", "risk-headless")["spec"]["clusterIP"]


def drop_the_governing_service(objects: Objects) -> None:
    objects.remove(km.named(objects, "Service", "risk-headless"))


def drop_risk_peer_policy(objects: Objects) -> None:
    objects.remove(policy(objects, "risk-peers"))


def risk_peers_on_another_port(objects: Objects) -> None:
    policy(objects, "risk-peers")["spec"]["egress"][0]["ports"][0]["port"] = 50052


def share_a_service_account(objects: Objects) -> None:
    km.pod_spec(km.named(objects, "Deployment", "oms"))["serviceAccountName"] = "risk"


def bind_loopback(objects: Objects) -> None:
    container_of(objects, "StatefulSet", "risk")["env"].append({"name": "TESSERA_HOST", "value": "127.0.0.1"})


def exchange_address_typo(objects: Objects) -> None:
    for config_map in km.of_kind(objects, "ConfigMap"):
        config_map["data"]["TESSERA_EXCHANGE_ADDRESS"] = "exchnage:50053"


def service_targets_wrong_port(objects: Objects) -> None:
    km.named(objects, "Service", "oms")["spec"]["ports"][0]["targetPort"] = 50051


def drop_default_deny(objects: Objects) -> None:
    objects.remove(policy(objects, "default-deny"))


def exchange_from_any_namespace(objects: Objects) -> None:
    policy(objects, "exchange-from-oms")["spec"]["ingress"][0]["from"][0]["namespaceSelector"] = {}


def exchange_from_risk(objects: Objects) -> None:
    peer = policy(objects, "exchange-from-oms")["spec"]["ingress"][0]["from"][0]
    peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] = "risk"


def exchange_from_everyone(objects: Objects) -> None:
    del policy(objects, "exchange-from-oms")["spec"]["ingress"][0]["from"]


def exchange_on_every_port(objects: Objects) -> None:
    del policy(objects, "exchange-from-oms")["spec"]["ingress"][0]["ports"]


def exchange_from_an_address_range(objects: Objects) -> None:
    policy(objects, "exchange-from-oms")["spec"]["ingress"][0]["from"].append({"ipBlock": {"cidr": "10.0.0.0/8"}})


def risk_on_a_second_port(objects: Objects) -> None:
    policy(objects, "risk-from-clients")["spec"]["ingress"][0]["ports"].append({"protocol": "TCP", "port": 8080})


def metrics_from_any_namespace(objects: Objects) -> None:
    policy(objects, "oms-metrics-from-monitoring")["spec"]["ingress"][0]["from"][0]["namespaceSelector"] = {}


def metrics_from_every_pod_of_the_monitoring_namespace(objects: Objects) -> None:
    del policy(objects, "exchange-metrics-from-monitoring")["spec"]["ingress"][0]["from"][0]["podSelector"]


def scraper_reaches_the_grpc_port(objects: Objects) -> None:
    policy(objects, "risk-metrics-from-monitoring")["spec"]["ingress"][0]["ports"].append({"protocol": "TCP", "port": 50051})


def metrics_port_from_clients(objects: Objects) -> None:
    policy(objects, "oms-from-clients")["spec"]["ingress"][0]["ports"].append({"protocol": "TCP", "port": 9102})


def drop_metrics_policy(objects: Objects) -> None:
    objects.remove(policy(objects, "risk-metrics-from-monitoring"))


def metrics_port_variable_mismatch(objects: Objects) -> None:
    env = container_of(objects, "Deployment", "oms")["env"]
    next(item for item in env if item["name"] == "TESSERA_OMS_METRICS_PORT")["value"] = "9999"


def scrape_annotation_wrong_port(objects: Objects) -> None:
    km.pod_template(km.named(objects, "Deployment", "exchange"))["metadata"]["annotations"]["prometheus.io/port"] = "9101"


def metrics_service_port_wrong_target(objects: Objects) -> None:
    km.named(objects, "Service", "risk")["spec"]["ports"][1]["targetPort"] = "grpc"


def exchange_without_a_client_ca(objects: Objects) -> None:
    env = container_of(objects, "Deployment", "exchange")["env"]
    env[:] = [item for item in env if item["name"] != "TESSERA_TLS_CA_FILE"]


def oms_without_a_client_certificate(objects: Objects) -> None:
    env = container_of(objects, "Deployment", "oms")["env"]
    env[:] = [item for item in env if item["name"] != "TESSERA_EXCHANGE_TLS_CERT_FILE"]


def exchange_tls_from_an_unmounted_path(objects: Objects) -> None:
    container_of(objects, "Deployment", "exchange")["volumeMounts"] = [
        mount for mount in container_of(objects, "Deployment", "exchange")["volumeMounts"]
        if mount["mountPath"] != "/etc/tessera/tls"]


def exchange_probed_on_its_tls_port(objects: Objects) -> None:
    container_of(objects, "Deployment", "exchange")["livenessProbe"]["grpc"]["port"] = 50053


def exchange_is_not_a_database_client(objects: Objects) -> None:
    del km.pod_labels(km.named(objects, "Deployment", "exchange"))["tessera.io/database-client"]


def database_from_everyone(objects: Objects) -> None:
    del policy(objects, "postgres-from-database-clients")["spec"]["ingress"][0]["from"]


def risk_reaches_the_internet(objects: Objects) -> None:
    egress = copy.deepcopy(policy(objects, "oms-to-exchange"))
    egress["metadata"]["name"] = "risk-to-internet"
    egress["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] = "risk"
    egress["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}]
    objects.append(egress)


def drop_venue_egress(objects: Objects) -> None:
    objects.remove(policy(objects, "exchange-to-venue"))


def secret_name_typo(objects: Objects) -> None:
    env = container_of(objects, "Deployment", "oms")["env"]
    url = next(item for item in env if item["name"] == "TESSERA_DATABASE_URL")
    url["valueFrom"]["secretKeyRef"]["name"] = "tessera-db"


def secret_key_typo(objects: Objects) -> None:
    env = container_of(objects, "Deployment", "exchange")["env"]
    next(item for item in env if item["name"] == "ASTER_API_KEY_FILE")["value"] = "/etc/tessera/venue/apikey"


def key_file_not_mounted(objects: Objects) -> None:
    container_of(objects, "StatefulSet", "risk")["volumeMounts"] = [
        mount for mount in container_of(objects, "StatefulSet", "risk")["volumeMounts"]
        if mount["mountPath"] != "/etc/tessera/hmac"
    ]


def commit_a_real_key(objects: Objects) -> None:
    secret = next(s for s in km.of_kind(objects, "Secret") if s["metadata"]["name"].startswith("tessera-hmac"))
    secret["data"]["current"] = base64.b64encode(b"9f8e7d6c5b4a39281706f5e4d3c2b1a0").decode()


def render_a_secret_in_prod(objects: Objects) -> None:
    objects.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tessera-hmac"}, "data": {}})


def mismatched_image_tag(objects: Objects) -> None:
    container = container_of(objects, "Deployment", "exchange")
    container["image"] = container["image"].rsplit(":", 1)[0] + ":0.0.9"


def latest_image(objects: Objects) -> None:
    for workload in km.workloads(objects):
        for container in km.containers(workload):
            container["image"] = container["image"].rsplit(":", 1)[0] + ":latest"


def misspelled_field(objects: Objects) -> None:
    container_of(objects, "StatefulSet", "risk")["readinesProbe"] = {"grpc": {"port": 50051}}


def string_port(objects: Objects) -> None:
    km.named(objects, "Service", "exchange")["spec"]["ports"][0]["port"] = "50053"


def schema_check(objects: Objects) -> list[str]:
    return km.validate_schemas(objects, km.KUBERNETES_VERSIONS[-1])


BREAKAGES: list[tuple[str, Callable[[Objects], None], Callable[[Objects], list[str]]]] = [
    ("dev", drop_readiness_probe, workload_checks.check_grpc_probes),
    ("dev", probe_the_wrong_port, workload_checks.check_grpc_probes),
    ("prod", probe_over_http, workload_checks.check_grpc_probes),
    ("dev", run_job_as_root, workload_checks.check_pod_security),
    ("prod", allow_runs_as_root, workload_checks.check_pod_security),
    ("prod", writable_root_filesystem, workload_checks.check_pod_security),
    ("dev", allow_privilege_escalation, workload_checks.check_pod_security),
    ("dev", keep_capabilities, workload_checks.check_pod_security),
    ("dev", mount_service_account_token, workload_checks.check_pod_security),
    ("dev", drop_job_limits, workload_checks.check_resources),
    ("prod", request_above_limit, workload_checks.check_resources),
    ("prod", drop_exchange_budget, workload_checks.check_disruption_budgets),
    ("dev", autoscale_the_exchange, lambda o: workload_checks.check_autoscalers(o, 1)),
    ("prod", drop_oms_autoscaler, lambda o: workload_checks.check_autoscalers(o, 2)),
    ("dev", autoscale_risk, lambda o: workload_checks.check_autoscalers(o, 1)),
    ("prod", pin_autoscaled_replicas, lambda o: workload_checks.check_autoscalers(o, 2)),
    ("prod", one_autoscaled_replica, lambda o: workload_checks.check_autoscalers(o, 2)),
    ("prod", two_exchanges, workload_checks.check_exchange_singleton),
    ("dev", roll_the_exchange, workload_checks.check_exchange_singleton),
    ("dev", short_grace_period, workload_checks.check_termination_grace),
    ("prod", drop_risk_budget, workload_checks.check_disruption_budgets),
    ("prod", drop_risk_readiness_probe, workload_checks.check_grpc_probes),
    ("dev", scale_risk_without_its_shard_count, workload_checks.check_risk_shards),
    ("prod", scale_risk_without_its_shard_count, workload_checks.check_risk_shards),
    ("dev", shard_count_without_the_replicas, workload_checks.check_risk_shards),
    ("prod", pin_the_shard_ordinal, workload_checks.check_risk_shards),
    ("prod", peers_in_another_namespace, workload_checks.check_risk_shards),
    ("dev", peers_through_the_client_service, workload_checks.check_risk_shards),
    ("dev", governing_service_with_a_cluster_ip, workload_checks.check_risk_shards),
    ("prod", drop_the_governing_service, workload_checks.check_risk_shards),
    ("dev", drop_risk_peer_policy, network_checks.check_risk_peers),
    ("prod", risk_peers_on_another_port, network_checks.check_risk_peers),
    ("dev", share_a_service_account, workload_checks.check_service_accounts),
    ("dev", bind_loopback, workload_checks.check_service_wiring),
    ("prod", exchange_address_typo, workload_checks.check_service_wiring),
    ("dev", service_targets_wrong_port, workload_checks.check_service_wiring),
    ("dev", drop_default_deny, network_checks.check_default_deny),
    ("prod", drop_default_deny, network_checks.check_exchange_isolation),
    ("dev", exchange_from_any_namespace, network_checks.check_exchange_isolation),
    ("prod", exchange_from_risk, network_checks.check_exchange_isolation),
    ("dev", exchange_from_everyone, network_checks.check_exchange_isolation),
    ("dev", exchange_on_every_port, network_checks.check_exchange_isolation),
    ("prod", exchange_from_an_address_range, network_checks.check_exchange_isolation),
    ("dev", risk_on_a_second_port, network_checks.check_client_ingress),
    ("dev", metrics_from_any_namespace, network_checks.check_metrics_ingress),
    ("prod", metrics_from_any_namespace, network_checks.check_client_ingress),
    ("prod", metrics_from_every_pod_of_the_monitoring_namespace, network_checks.check_metrics_ingress),
    ("dev", metrics_from_every_pod_of_the_monitoring_namespace, network_checks.check_exchange_isolation),
    ("dev", scraper_reaches_the_grpc_port, network_checks.check_metrics_ingress),
    ("prod", metrics_port_from_clients, network_checks.check_metrics_ingress),
    ("dev", drop_metrics_policy, network_checks.check_metrics_ingress),
    ("prod", metrics_port_variable_mismatch, workload_checks.check_metrics_wiring),
    ("dev", scrape_annotation_wrong_port, workload_checks.check_metrics_wiring),
    ("prod", metrics_service_port_wrong_target, workload_checks.check_service_wiring),
    ("prod", exchange_is_not_a_database_client, network_checks.check_database_access),
    ("prod", exchange_without_a_client_ca, lambda o: network_checks.check_exchange_mtls(o, required=True)),
    ("prod", oms_without_a_client_certificate, lambda o: network_checks.check_exchange_mtls(o, required=True)),
    ("prod", exchange_tls_from_an_unmounted_path, lambda o: network_checks.check_exchange_mtls(o, required=True)),
    ("prod", exchange_probed_on_its_tls_port, lambda o: network_checks.check_exchange_mtls(o, required=True)),
    ("dev", database_from_everyone, network_checks.check_database_access),
    ("dev", risk_reaches_the_internet, lambda o: network_checks.check_venue_egress(o, required=False)),
    ("prod", drop_venue_egress, lambda o: network_checks.check_venue_egress(o, required=True)),
    ("dev", secret_name_typo, lambda o: config_checks.check_references(o, external_secrets=False)),
    ("prod", secret_name_typo, lambda o: config_checks.check_references(o, external_secrets=True)),
    ("dev", secret_key_typo, lambda o: config_checks.check_references(o, external_secrets=False)),
    ("prod", key_file_not_mounted, lambda o: config_checks.check_references(o, external_secrets=True)),
    ("dev", commit_a_real_key, lambda o: config_checks.check_secret_values(o, secrets_allowed=True)),
    ("prod", render_a_secret_in_prod, lambda o: config_checks.check_secret_values(o, secrets_allowed=False)),
    ("dev", mismatched_image_tag, config_checks.check_images),
    ("prod", latest_image, config_checks.check_images),
    ("dev", misspelled_field, schema_check),
    ("prod", string_port, schema_check),
]


@pytest.mark.parametrize(
    ("overlay_name", "breakage", "check"),
    BREAKAGES,
    ids=[f"{overlay}-{breakage.__name__}" for overlay, breakage, _ in BREAKAGES],
)
def test_check_reports_a_broken_manifest(
    rendered: dict[str, Objects],
    overlay_name: str,
    breakage: Callable[[Objects], None],
    check: Callable[[Objects], list[str]],
) -> None:
    objects = copy.deepcopy(rendered[overlay_name])
    assert check(objects) == [], "the overlay as committed must pass"
    breakage(objects)
    assert check(objects) != []


def test_a_leaked_key_in_a_manifest_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_text("stringData:\n  current: q8Vn2xR7tLm4Kp9Zs3Wd6Hf1Jc5Bg0Ya\n")
    (tmp_path / "dev.yaml").write_text("literals:\n  - current=dev-only-hmac-key-not-a-secret-0000000000\n")
    assert config_checks.committed_secret_like_values(tmp_path) == [f"{tmp_path.name}/secret.yaml:2"]
