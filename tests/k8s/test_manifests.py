"""The rendered dev and prod overlays: valid Kubernetes objects that keep Tessera's
deployment invariants (probes, non-root, limits, budgets, autoscalers, policies)."""

from __future__ import annotations

import pytest

import k8s_config_checks as config_checks
import k8s_manifests as km
import k8s_network_checks as network_checks
import k8s_workload_checks as workload_checks

NAMESPACES = {"dev": "tessera-dev", "prod": "tessera"}
MIN_AUTOSCALED_REPLICAS = {"dev": 1, "prod": 2}


def test_every_object_is_namespaced_into_the_overlay_namespace(objects: list[dict], overlay: str) -> None:
    assert km.of_kind(objects, "Namespace")[0]["metadata"]["name"] == NAMESPACES[overlay]
    misplaced = [
        km.ref(obj) for obj in objects
        if obj["kind"] != "Namespace" and obj["metadata"].get("namespace") != NAMESPACES[overlay]
    ]
    assert misplaced == []


@pytest.mark.parametrize("version", km.KUBERNETES_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(objects: list[dict], version: str) -> None:
    assert km.validate_schemas(objects, version) == []


def test_every_service_has_grpc_liveness_and_readiness_probes_on_its_container_port(objects: list[dict]) -> None:
    assert sorted(km.ref(w) for w in km.long_running(objects)) == [
        "Deployment/exchange", "Deployment/oms", "StatefulSet/risk"]
    assert workload_checks.check_grpc_probes(objects) == []


def test_every_pod_runs_non_root_with_a_read_only_root_and_no_privileges(objects: list[dict]) -> None:
    assert workload_checks.check_pod_security(objects) == []


def test_every_container_has_cpu_and_memory_requests_and_limits(objects: list[dict]) -> None:
    assert workload_checks.check_resources(objects) == []


def test_every_service_has_one_pod_disruption_budget(objects: list[dict]) -> None:
    assert workload_checks.check_disruption_budgets(objects) == []


def test_only_the_oms_is_autoscaled_with_enough_replicas(objects: list[dict], overlay: str) -> None:
    assert workload_checks.check_autoscalers(objects, MIN_AUTOSCALED_REPLICAS[overlay]) == []


def test_exchange_runs_exactly_one_replica_and_never_two_at_once(objects: list[dict]) -> None:
    assert workload_checks.check_exchange_singleton(objects) == []


def test_services_leave_time_for_a_graceful_stop(objects: list[dict]) -> None:
    assert workload_checks.check_termination_grace(objects) == []


def test_each_workload_has_its_own_service_account_without_a_token(objects: list[dict]) -> None:
    assert workload_checks.check_service_accounts(objects) == []


def test_services_listen_on_all_interfaces_on_their_documented_ports(objects: list[dict]) -> None:
    assert workload_checks.check_service_wiring(objects) == []


def test_risk_runs_one_replica_per_shard_and_each_finds_its_peers(objects: list[dict]) -> None:
    assert workload_checks.check_risk_shards(objects) == []


def test_risk_replicas_run_the_overlays_shard_count(rendered: dict[str, list[dict]]) -> None:
    counts = {name: km.named(objects, "StatefulSet", km.SHARDED)["spec"]["replicas"]
              for name, objects in rendered.items()}
    assert counts == {"dev": 2, "prod": 3}  # dev runs two, so forwarding is exercised there too


def test_risk_replicas_reach_each_other_for_forwarding(objects: list[dict]) -> None:
    assert network_checks.check_risk_peers(objects) == []


def test_a_job_runs_the_migrations_against_the_database_secret(objects: list[dict]) -> None:
    assert workload_checks.check_migration_job(objects) == []


def test_namespace_denies_ingress_by_default(objects: list[dict]) -> None:
    assert network_checks.check_default_deny(objects) == []


def test_only_oms_pods_reach_the_exchange(objects: list[dict]) -> None:
    assert network_checks.check_exchange_isolation(objects) == []


def test_clients_reach_risk_and_oms_on_their_own_ports_only(objects: list[dict]) -> None:
    assert network_checks.check_client_ingress(objects) == []


def test_only_risk_oms_and_the_migration_reach_the_database(objects: list[dict]) -> None:
    assert network_checks.check_database_access(objects) == []


def test_services_serve_metrics_on_their_documented_ports_with_scrape_annotations(objects: list[dict]) -> None:
    assert workload_checks.check_metrics_wiring(objects) == []


def test_only_the_monitoring_namespace_scrapes_and_only_the_metrics_ports(objects: list[dict]) -> None:
    assert network_checks.check_metrics_ingress(objects) == []


def test_only_the_exchange_reaches_the_venue_and_only_in_prod(objects: list[dict], overlay: str) -> None:
    assert network_checks.check_venue_egress(objects, required=overlay == "prod") == []


def test_prod_requires_mutual_tls_between_the_oms_and_the_exchange(objects: list[dict], overlay: str) -> None:
    assert network_checks.check_exchange_mtls(objects, required=overlay == "prod") == []


def test_referenced_secrets_and_config_maps_exist_with_the_keys_read(objects: list[dict], overlay: str) -> None:
    assert config_checks.check_references(objects, external_secrets=overlay == "prod") == []


def test_no_real_secret_value_is_rendered(objects: list[dict], overlay: str) -> None:
    assert config_checks.check_secret_values(objects, secrets_allowed=overlay == "dev") == []


def test_one_tessera_image_tag_across_objects(objects: list[dict]) -> None:
    assert config_checks.check_images(objects) == []


def test_no_real_looking_secret_is_committed_under_k8s() -> None:
    assert config_checks.committed_secret_like_values() == []


def test_dev_runs_postgres_in_the_cluster_and_prod_an_external_one(rendered: dict[str, list[dict]]) -> None:
    postgres = km.named(rendered["dev"], "StatefulSet", "postgres")
    assert postgres["spec"]["replicas"] == 1
    assert [claim["metadata"]["name"] for claim in postgres["spec"]["volumeClaimTemplates"]] == ["data"]
    assert [km.ref(s) for s in km.of_kind(rendered["prod"], "StatefulSet", "PersistentVolumeClaim")] == [
        "StatefulSet/risk"]  # Risk's state is in the store: no claim
    assert "volumeClaimTemplates" not in km.named(rendered["prod"], "StatefulSet", "risk")["spec"]


def test_prod_memory_is_guaranteed(rendered: dict[str, list[dict]]) -> None:
    loose = [
        f"{km.ref(w)} {c['name']}"
        for w in km.workloads(rendered["prod"])
        for c in km.containers(w)
        if c["resources"]["requests"]["memory"] != c["resources"]["limits"]["memory"]
    ]
    assert loose == []


def test_deployment_page_documents_how_to_create_every_external_secret() -> None:
    operations = (km.ROOT / "docs" / "deployment.md").read_text()
    for name, keys in km.EXTERNAL_SECRETS.items():
        assert f"kubectl -n tessera create secret generic {name}" in operations, name
        for key in keys:
            assert f"--from-file={key}=" in operations or f"--from-literal={key}=" in operations, (name, key)
