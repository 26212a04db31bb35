"""The dev overlay, played: ``k8s/overlays/dev`` rendered by the pinned kubectl,
converted for podman 4.3's gaps by ``tools/kube_play.py``, and played with ``podman
kube play`` in the order the README's deploy procedure waits for: PostgreSQL (a
stand-in from Debian's packages) until ready, the migration Job until complete, then
Risk (a Pod per replica of its StatefulSet, each answering to its stable DNS name), OMS
and Exchange, each a Pod answering to its Service's name on the run's own network.

Checked: each service passes its declared gRPC probes (run here as the kubelet runs
them: podman drops them), orders sent with the ``tessera`` command fill, the migration
ran to the newest revision, every process runs as the declared non-root user on a
read-only root, the Secrets' values reached the services, each Risk replica decides its
own accounts and forwards the others' to their owner, ``tessera verify-store`` is clean,
and tearing down leaves nothing behind.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import deploy_support as ds
import grpc
import kube_play
import pytest
import yaml
from podman_deploy import Images, Podman

from tessera.common.v1 import types_pb2 as pb
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

SERVICES = ("risk", "oms", "exchange")
POSTGRES_IMAGE = "docker.io/library/postgres:17-bookworm"
STORE_USERS = ("risk", "oms")  # the services that read TESSERA_DATABASE_URL


@dataclass
class PlayedOverlay:
    podman: Podman
    run: str
    book: kube_play.Playbook
    workdir: Path
    startup: dict[str, ds.ProbeOutcome] = field(default_factory=dict)
    migrate_exit: int | None = None
    stop_codes: dict[str, int] = field(default_factory=dict)
    torn_down: bool = False

    @property
    def network(self) -> str:
        return f"{self.run}-net"

    def play(self, workload: str) -> kube_play.PlayablePod:
        """Play every pod of the workload (each replica of a StatefulSet); the first is returned."""
        for pod in self.book.replicas(workload):
            path = self.workdir / f"{pod.name}.yaml"
            path.write_text(yaml.safe_dump_all(pod.documents, sort_keys=False))
            self.podman.run("kube", "play", "--network", self.network + pod.network_option, str(path))
        return self.book.pod(workload)

    def pods(self, *workloads: str) -> list[kube_play.PlayablePod]:
        """Every pod of the workloads (default: the services), replicas included."""
        return [pod for workload in workloads or SERVICES for pod in self.book.replicas(workload)]

    def container(self, workload: str, ordinal: int | None = None) -> str:
        pod = self.book.pod(workload, ordinal)
        return pod.podman_container(pod.containers()[0])

    def address(self, service: str, ordinal: int | None = None) -> str:
        pod = self.book.pod(service, ordinal)
        return f"127.0.0.1:{pod.host_port(service, 'grpc')}"

    def secret(self, name: str) -> dict[str, str]:
        """A rendered Secret's decoded values, by its name before the content hash."""
        return next(values for rendered, values in self.book.secrets.items() if rendered.rsplit("-", 1)[0] == name)

    def exit_code(self, container: str) -> int | None:
        state = self.podman.out("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container, check=False)
        status, _, code = state.partition(" ")
        return int(code) if status == "exited" else None

    def teardown(self) -> None:
        """Stop the services' pods (SIGTERM, as a rollout does), then remove all the run made."""
        if self.torn_down:
            return
        self.torn_down = True
        for pod in self.pods():
            if self.podman.run("pod", "exists", pod.name, check=False).returncode == 0:
                # The service's container first, then its pod, as the kubelet stops the app
                # containers before the sandbox: `podman pod stop` stops the pod's network
                # holder beside the service, whose goodbyes to its peers are then lost and
                # each peer's server waits out its whole grace for the connection to close.
                service = pod.podman_container(pod.containers()[0])
                self.podman.run("stop", "--time", "20", service, check=False)
                self.podman.run("pod", "stop", "--time", "20", pod.name, check=False)
                code = self.exit_code(service)
                self.stop_codes[pod.name.removeprefix(f"{self.run}-")] = -1 if code is None else code
        self.podman.remove_everything_named(self.run)
        shutil.rmtree(self.workdir, ignore_errors=True)


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None and value is not False:
            return value
        time.sleep(0.25)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture(scope="module")
def played(podman: Podman, images: Images, dev_overlay: list[dict[str, Any]]) -> Iterator[PlayedOverlay]:
    run = ds.new_run_name()
    ports: dict[tuple[str, str, int], int] = {}
    book = kube_play.convert(
        dev_overlay, run=run,
        host_port=lambda workload, container, port: ports.setdefault((workload, container, port), ds.free_port()),
        images={"tessera:dev": images.tessera, POSTGRES_IMAGE: images.postgres},
    )
    overlay = PlayedOverlay(podman, run, book, Path(tempfile.mkdtemp(prefix=f"{run}-")))
    try:
        podman.run("network", "create", overlay.network)
        # PostgreSQL first, until it accepts connections (its readiness probe's command).
        postgres = overlay.play("postgres")
        ready = postgres.probes["postgres"]["readinessProbe"]
        check = ds.probe_check(podman, ready, overlay.container("postgres"),
                               lambda port: postgres.host_port("postgres", port))
        wait_for(lambda: check(float(ready.get("timeoutSeconds", 1)))[0], 60, "PostgreSQL to accept connections")
        # Then the migration Job, until complete (README: kubectl wait --for=condition=complete).
        overlay.play("tessera-migrate")
        migrate = overlay.container("tessera-migrate")
        wait_for(lambda: overlay.exit_code(migrate) == 0, 120, "the migration Job to complete")
        overlay.migrate_exit = overlay.exit_code(migrate)
        for service in SERVICES:
            overlay.play(service)

        def startup(pod: kube_play.PlayablePod) -> ds.ProbeOutcome:
            service = pod.workload
            probe = pod.probes[service]["startupProbe"]
            return ds.run_probe("startupProbe", probe,
                                ds.probe_check(podman, probe, pod.podman_container(service),
                                               lambda p: pod.host_port(service, p)))

        # Each pod's startup probe on its own clock, side by side, as the kubelet runs them.
        with concurrent.futures.ThreadPoolExecutor(len(overlay.pods())) as probes:
            overlay.startup = dict(zip((pod.name for pod in overlay.pods()), probes.map(startup, overlay.pods())))
        yield overlay
    finally:
        overlay.teardown()


def test_each_service_passes_the_grpc_probes_its_deployment_declares(played: PlayedOverlay) -> None:
    assert [pod.name.removeprefix(f"{played.run}-") for pod in played.pods()] == [
        "risk-0", "risk-1", "oms", "exchange"]  # the dev overlay's two Risk shards, a pod each
    assert {s: o.ok for s, o in played.startup.items()} == {p.name: True for p in played.pods()}, played.startup
    for pod in played.pods():
        service = pod.workload
        probes = pod.probes[service]
        assert set(probes) == set(kube_play.PROBE_KINDS)
        for kind in ("readinessProbe", "livenessProbe"):
            assert "grpc" in probes[kind], (service, kind)
            check = ds.probe_check(played.podman, probes[kind], pod.podman_container(service),
                                   lambda p, pod=pod, service=service: pod.host_port(service, p))
            outcome = ds.run_probe(kind, probes[kind], check)
            assert outcome.ok, (service, outcome)


def test_orders_sent_with_the_tessera_command_are_filled(played: PlayedOverlay) -> None:
    risk, oms = played.address("risk"), played.address("oms")
    account = f"{played.run}-acct"
    for symbol, side in (("BTCUSDT", "buy"), ("ETHUSDT", "buy"), ("BTCUSDT", "sell")):
        result = ds.tessera("submit", symbol, side, "0.01", "--account", account, risk=risk, oms=oms,
                            token=dev_token())
        assert result.returncode == 0, ds.show(result)
        assert "oms: FILLED" in result.stdout, ds.show(result)
    listed = ds.tessera("orders", "--account", account, "--status", "filled", oms=oms, token=dev_token())
    assert listed.returncode == 0, ds.show(listed)
    assert listed.stdout.count(" FILLED ") == 3, ds.show(listed)


def test_the_migration_job_completed_and_the_store_is_at_the_newest_revision(played: PlayedOverlay) -> None:
    assert played.migrate_exit == 0
    logs = played.podman.run("logs", played.container("tessera-migrate")).stdout
    head = ds.head_revision()
    assert f"is at revision {head}" in logs
    database = played.secret("tessera-database")["url"].rsplit("/", 1)[1]
    stored = played.podman.out("exec", played.container("postgres"), "psql", "--no-psqlrc", "--tuples-only",
                               "--no-align", "--username", "tessera", "--dbname", database,
                               "--command", "SELECT version_num FROM alembic_version")
    assert stored == head


def test_every_process_runs_as_its_declared_non_root_user_on_a_read_only_root(played: PlayedOverlay) -> None:
    for pod in played.pods(*SERVICES, "postgres"):
        workload = pod.workload
        container = pod.pod["spec"]["containers"][0]
        declared = container["securityContext"]
        assert declared["runAsNonRoot"] and declared["readOnlyRootFilesystem"]
        process = ds.process_view(played.podman, pod.podman_container(container["name"]))
        assert (process.uid, process.gid) == (declared["runAsUser"], declared["runAsGroup"]), (workload, process)
        assert process.uid != 0
        assert "ro" in process.root_mount_options, (workload, process)
        assert process.effective_capabilities == 0, (workload, process)
        if workload in SERVICES:
            assert f"services.{workload}" in process.command, process


def test_the_secret_values_reached_the_services(played: PlayedOverlay) -> None:
    hmac = played.secret("tessera-hmac")
    for pod in played.pods():
        mounted = played.podman.out("exec", pod.podman_container(pod.workload), "cat", "/etc/tessera/hmac/current",
                                    "/etc/tessera/hmac/current-key-id")
        assert mounted == hmac["current"] + hmac["current-key-id"], pod.name
    for pod in played.pods(*STORE_USERS):
        url = played.podman.out("exec", pod.podman_container(pod.workload), "printenv", "TESSERA_DATABASE_URL")
        assert url == played.secret("tessera-database")["url"], pod.name
    venue = played.secret("tessera-venue")
    environment = played.podman.out("exec", played.container("exchange"), "env").splitlines()
    assert "ASTER_API_KEY_FILE=/etc/tessera/venue/api-key" in environment  # a file, never a value
    assert not [line for line in environment if line.startswith(("ASTER_API_KEY=", "ASTER_API_SECRET="))]
    mounted = played.podman.out("exec", played.container("exchange"), "cat", "/etc/tessera/venue/api-key",
                                "/etc/tessera/venue/api-secret")
    assert mounted == venue["api-key"] + venue["api-secret"]
    # Risk signs with the key of the Secret, under its key id.
    with dev_channel(played.address("risk")) as channel:
        intent = pb.OrderIntent(account=f"{played.run}-secret", venue="aster", market_type=pb.MARKET_TYPE_FUTURES,
                                symbol="SOLUSDT", side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_MARKET,
                                quantity="1", time_in_force=pb.TIME_IN_FORCE_GTC)
        approved = risk_pb2_grpc.RiskServiceStub(channel).ValidateOrder(
            risk_pb2.ValidateOrderRequest(order=intent), timeout=30)
    verified = ds.verify_token_with(hmac["current-key-id"], hmac["current"], approved.order, approved.risk_token)
    assert (verified.ok, verified.key_id) == (True, hmac["current-key-id"]), verified.reason


def test_each_risk_replica_decides_its_own_accounts_and_forwards_the_others(played: PlayedOverlay) -> None:
    from services.risk.sharding import shard_of

    replicas = played.book.replicas("risk")
    shards = len(replicas)
    for pod in replicas:
        environment = played.podman.out("exec", pod.podman_container("risk"), "env").splitlines()
        assert f"TESSERA_RISK_SHARDS={shards}" in environment, pod.name
        assert played.podman.out("exec", pod.podman_container("risk"), "hostname") == f"risk-{pod.ordinal}"
    accounts = {owner: next(a for a in (f"{played.run}-shard-{n}" for n in range(1000)) if shard_of(a, shards) == owner)
                for owner in range(shards)}
    oms = played.address("oms")
    for entry in range(shards):  # each replica takes every account: its own, and the others' by forwarding
        for owner, account in accounts.items():
            result = ds.tessera("submit", "BTCUSDT", "buy", "0.01", "--account", account,
                                risk=played.address("risk", entry), oms=oms, token=dev_token())
            assert result.returncode == 0, (entry, owner, ds.show(result))
            assert "oms: FILLED" in result.stdout, (entry, owner, ds.show(result))


def test_verify_store_finds_no_violation(played: PlayedOverlay) -> None:
    result = played.podman.run("exec", played.container("oms"), "tessera", "verify-store", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no violations" in result.stdout


def test_stopping_ends_every_service_cleanly_and_teardown_leaves_nothing(played: PlayedOverlay) -> None:
    played.teardown()
    assert played.stop_codes == {"risk-0": 0, "risk-1": 0, "oms": 0, "exchange": 0}
    assert played.podman.leftovers(played.run) == {w: [] for w in ("pod", "container", "volume", "secret", "network")}
    assert not played.workdir.exists()


def dev_token() -> str:
    """A token of the dev overlay's dev-trader (HS256, with the overlay's dev-only key)."""
    from services.common.identities import mint

    key = b"dev-only-jwt-hmac-key-not-a-secret-0000000000"
    return mint(key, "dev-trader", issuer="tessera", audience="tessera", algorithm="HS256")


def dev_channel(address: str) -> grpc.Channel:
    from services.cli.connection import channel_for

    return channel_for(address, token=dev_token())
