"""tools/kube_play.py: each conversion rule for podman 4.3's ``kube play`` gaps, on
small hand-written objects (the played dev overlay is tests/deploy)."""

from __future__ import annotations

import base64
import copy
import itertools
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
import kube_play  # noqa: E402

RUN = "tdtabc"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def container(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "tessera:dev", **extra}


def deployment(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


GRPC_PROBE = {"grpc": {"port": 50052}, "periodSeconds": 2, "failureThreshold": 30}

OBJECTS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config-h1"}, "data": {"MODE": "paper"}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hmac-h2"},
     "data": {"current": b64("k" * 40), "previous": ""}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-h3"}, "stringData": {"url": "postgresql://x"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "oms-svc"},
     "spec": {"selector": {"app": "oms"}, "ports": [{"port": 50052}]}},
    deployment("oms", {
        "containers": [container(
            "oms",
            ports=[{"name": "grpc", "containerPort": 50052}, {"name": "metrics", "containerPort": 9102}],
            env=[{"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db-h3", "key": "url"}}},
                 {"name": "PLAIN", "value": "1"}],
            envFrom=[{"configMapRef": {"name": "config-h1"}}],
            volumeMounts=[{"name": "hmac", "mountPath": "/etc/hmac", "readOnly": True},
                          {"name": "tmp", "mountPath": "/tmp"}],
            startupProbe=GRPC_PROBE, readinessProbe=GRPC_PROBE, livenessProbe=GRPC_PROBE,
        )],
        "volumes": [{"name": "hmac", "secret": {"secretName": "hmac-h2", "defaultMode": 0o440}},
                    {"name": "tmp", "emptyDir": {}}],
    }),
    {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "pg"},
     "spec": {"selector": {"matchLabels": {"app": "pg"}}, "serviceName": "pg",
              "template": {"metadata": {"labels": {"app": "pg"}}, "spec": {
                  "containers": [{"name": "pg", "image": "postgres:17",
                                  "volumeMounts": [{"name": "data", "mountPath": "/var/lib/pg"},
                                                   {"name": "tmp", "mountPath": "/tmp"},
                                                   {"name": "run", "mountPath": "/var/run/postgresql"}]}],
                  "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "run", "emptyDir": {}}]}},
              "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                        "spec": {"accessModes": ["ReadWriteOnce"],
                                                 "resources": {"requests": {"storage": "1Gi"}}}}]}},
    {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
     "spec": {"template": {"metadata": {"labels": {"app": "migrate"}},
                           "spec": {"restartPolicy": "Never", "containers": [container("migrate")]}}}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"}, "spec": {}},
]


@pytest.fixture
def book() -> kube_play.Playbook:
    ports = itertools.count(41000)
    return kube_play.convert(OBJECTS, run=RUN, host_port=lambda workload, name, port: next(ports),
                             images={"tessera:dev": "localhost/tessera:t1", "postgres:17": "localhost/pg:t1"})


def test_each_workload_becomes_one_pod_named_after_the_run_and_the_workload(book: kube_play.Playbook) -> None:
    assert [(p.kind, p.workload, p.name, p.pod["kind"]) for p in book.pods] == [
        ("Deployment", "oms", f"{RUN}-oms", "Pod"),
        ("StatefulSet", "pg", f"{RUN}-pg-0", "Pod"),
        ("Job", "migrate", f"{RUN}-migrate", "Pod"),
    ]
    assert book.pod("oms").pod["metadata"]["labels"] == {"app": "oms", "tessera.io/deploy-run": RUN}


def test_a_pod_answers_to_the_name_of_the_service_that_selects_it(book: kube_play.Playbook) -> None:
    assert book.pod("oms").alias == "oms-svc"
    assert book.pod("oms").network_option == ":alias=oms-svc"
    assert book.pod("migrate").alias is None and book.pod("migrate").network_option == ""


SHARDED: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "risk", "namespace": "dev"},
     "spec": {"selector": {"app": "risk"}, "ports": [{"port": 50051}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "risk-headless", "namespace": "dev"},
     "spec": {"clusterIP": "None", "selector": {"app": "risk"}, "ports": [{"port": 50051}]}},
    {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "risk", "namespace": "dev"},
     "spec": {"replicas": 2, "serviceName": "risk-headless", "selector": {"matchLabels": {"app": "risk"}},
              "template": {"metadata": {"labels": {"app": "risk"}}, "spec": {
                  "containers": [container("risk", ports=[{"name": "grpc", "containerPort": 50051}],
                                           volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}])],
                  "volumes": [{"name": "tmp", "emptyDir": {}}]}}}},
]


def test_each_replica_of_a_stateful_set_is_a_pod_with_its_ordinal_host_name_and_stable_dns_names() -> None:
    ports = itertools.count(42000)
    asked: list[tuple[str, str, int]] = []
    book = kube_play.convert(SHARDED, run=RUN, host_port=lambda *key: asked.append(key) or next(ports))
    replicas = book.replicas("risk")
    assert [(p.name, p.ordinal, p.pod["spec"]["hostname"]) for p in replicas] == [
        (f"{RUN}-risk-0", 0, "risk-0"), (f"{RUN}-risk-1", 1, "risk-1")]
    assert replicas[1].aliases == ["risk", "risk-headless", "risk-1.risk-headless", "risk-1.risk-headless.dev.svc",
                                   "risk-1.risk-headless.dev.svc.cluster.local"]
    assert asked == [("risk-0", "risk", 50051), ("risk-1", "risk", 50051)]  # a host port per replica
    assert [p.host_port("risk", "grpc") for p in replicas] == [42000, 42001]
    assert [p.volumes for p in replicas] == [[f"{RUN}-risk-0-tmp"], [f"{RUN}-risk-1-tmp"]]
    assert book.pod("risk") is replicas[0] and book.pod("risk", 1) is replicas[1]


def test_a_stateful_set_scaled_to_zero_is_dropped() -> None:
    scaled = copy.deepcopy(SHARDED)
    scaled[2]["spec"]["replicas"] = 0
    book = kube_play.convert(scaled, run=RUN, host_port=lambda *_: 1)
    assert book.pods == [] and "StatefulSet/risk" in book.dropped


def test_secrets_become_config_maps_with_their_decoded_values(book: kube_play.Playbook) -> None:
    maps = {cm["metadata"]["name"]: cm["data"] for cm in book.config_maps}
    assert maps == {f"{RUN}-config-h1": {"MODE": "paper"},
                    f"{RUN}-hmac-h2": {"current": "k" * 40, "previous": ""},
                    f"{RUN}-db-h3": {"url": "postgresql://x"}}
    assert book.secrets["hmac-h2"]["current"] == "k" * 40


def test_secret_references_become_config_map_references_to_the_renamed_maps(book: kube_play.Playbook) -> None:
    spec = book.pod("oms").pod["spec"]
    env = spec["containers"][0]["env"]
    assert env[0]["valueFrom"] == {"configMapKeyRef": {"name": f"{RUN}-db-h3", "key": "url"}}
    assert env[1] == {"name": "PLAIN", "value": "1"}
    assert spec["containers"][0]["envFrom"] == [{"configMapRef": {"name": f"{RUN}-config-h1"}}]
    assert spec["volumes"][0] == {"name": "hmac", "configMap": {"name": f"{RUN}-hmac-h2", "defaultMode": 0o440}}


def test_a_pod_play_carries_the_config_maps_it_reads_then_its_claims_then_the_pod(book: kube_play.Playbook) -> None:
    oms = book.pod("oms")
    assert [(d["kind"], d["metadata"]["name"]) for d in oms.documents] == [
        ("ConfigMap", f"{RUN}-hmac-h2"), ("ConfigMap", f"{RUN}-db-h3"), ("ConfigMap", f"{RUN}-config-h1"),
        ("Pod", f"{RUN}-oms"),
    ]
    assert [d["kind"] for d in book.pod("pg").documents] == ["PersistentVolumeClaim", "Pod"]


def test_empty_dirs_get_a_name_of_their_own_per_pod_and_run(book: kube_play.Playbook) -> None:
    oms, pg = book.pod("oms"), book.pod("pg")
    assert oms.pod["spec"]["volumes"][1] == {"name": f"{RUN}-oms-tmp", "emptyDir": {}}
    assert oms.pod["spec"]["containers"][0]["volumeMounts"][1] == {"name": f"{RUN}-oms-tmp", "mountPath": "/tmp"}
    assert f"{RUN}-pg-0-tmp" in pg.volumes and f"{RUN}-oms-tmp" in oms.volumes


def test_a_stateful_set_gets_a_claim_per_template_mounted_where_the_template_says(book: kube_play.Playbook) -> None:
    pg = book.pod("pg")
    claim = pg.documents[0]
    assert claim["metadata"]["name"] == f"{RUN}-data-pg-0"
    assert claim["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    assert {"name": "data", "persistentVolumeClaim": {"claimName": f"{RUN}-data-pg-0"}} in pg.pod["spec"]["volumes"]
    assert pg.pod["spec"]["containers"][0]["volumeMounts"][0] == {"name": "data", "mountPath": "/var/lib/pg"}


def test_a_job_becomes_a_pod_restarted_on_failure(book: kube_play.Playbook) -> None:
    assert book.pod("migrate").pod["spec"]["restartPolicy"] == "OnFailure"


def test_mounts_under_var_run_move_to_run(book: kube_play.Playbook) -> None:
    mounts = book.pod("pg").pod["spec"]["containers"][0]["volumeMounts"]
    assert mounts[2] == {"name": f"{RUN}-pg-0-run", "mountPath": "/run/postgresql"}


def test_every_container_port_is_published_on_loopback_on_the_chosen_host_port(book: kube_play.Playbook) -> None:
    oms = book.pod("oms")
    ports = oms.pod["spec"]["containers"][0]["ports"]
    assert ports == [{"name": "grpc", "containerPort": 50052, "hostIP": "127.0.0.1", "hostPort": 41000},
                     {"name": "metrics", "containerPort": 9102, "hostIP": "127.0.0.1", "hostPort": 41001}]
    assert oms.host_port("oms", "grpc") == 41000 and oms.host_port("oms", 9102) == 41001


def test_probes_are_removed_and_returned_for_the_caller_to_run(book: kube_play.Playbook) -> None:
    oms = book.pod("oms")
    assert oms.probes == {"oms": {"startupProbe": GRPC_PROBE, "readinessProbe": GRPC_PROBE,
                                  "livenessProbe": GRPC_PROBE}}
    assert not any(key.endswith("Probe") for key in oms.pod["spec"]["containers"][0])


def test_images_are_replaced_as_mapped(book: kube_play.Playbook) -> None:
    assert book.pod("oms").pod["spec"]["containers"][0]["image"] == "localhost/tessera:t1"
    assert book.pod("pg").pod["spec"]["containers"][0]["image"] == "localhost/pg:t1"


def test_objects_kube_play_cannot_use_are_listed_as_dropped(book: kube_play.Playbook) -> None:
    assert book.dropped == ["Namespace/dev", "Service/oms-svc", "NetworkPolicy/deny"]


def test_every_volume_name_the_play_creates_starts_with_the_run(book: kube_play.Playbook) -> None:
    assert book.volumes() and all(name.startswith(f"{RUN}-") for name in book.volumes())


def test_the_rendered_objects_are_left_unchanged() -> None:
    before = copy.deepcopy(OBJECTS)
    kube_play.convert(OBJECTS, run=RUN, host_port=lambda *_: 1)
    assert OBJECTS == before


def test_a_reference_to_a_secret_the_overlay_does_not_render_is_refused() -> None:
    broken = copy.deepcopy(OBJECTS)
    broken[2]["metadata"]["name"] = "hmac-other"
    with pytest.raises(ValueError, match="Secret hmac-h2 is referenced but not rendered"):
        kube_play.convert(broken, run=RUN, host_port=lambda *_: 1)
