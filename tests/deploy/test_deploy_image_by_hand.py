"""The image, run by hand as an operator would with ``docker run``: the migration, then
Risk, OMS and Exchange, each in its own container on one network (they find each other
by name), with a read-only root file system, no capabilities, the HMAC key as a
podman secret and the SQLite store on a volume.

Checked: the image is the one the Dockerfile describes (its user, the compiled core),
the migration reaches the newest revision, each service passes the gRPC probes its
Deployment declares, orders sent with the ``tessera`` command fill, the processes run
as the image's user on a read-only root, the key reached every service,
``tessera verify-store`` is clean, and stopping and removing everything leaves nothing.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from dataclasses import dataclass, field
from typing import Any, Iterator

import deploy_support as ds
import grpc
import pytest
from podman_deploy import Images, Podman

from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

SERVICES = {"exchange": (50053, 9103), "risk": (50051, 9101), "oms": (50052, 9102)}  # started in this order
DOCKERFILE_USER = re.search(r"^USER\s+(\d+):(\d+)\s*$", (ds.ROOT / "Dockerfile").read_text(), re.M)


ISSUER, AUDIENCE = "tessera", "tessera"
ENTITLEMENTS = """principals:
  - {name: tessera-service, roles: [service]}
  - {name: tester, roles: [trader, operator, auditor], accounts: ["*"]}
"""

@dataclass
class ByHand:
    podman: Podman
    image: str
    run: str
    key_id: str
    secret: str
    jwt_key: str = field(default_factory=lambda: secrets.token_urlsafe(36))
    ports: dict[str, tuple[int, int]] = field(default_factory=dict)  # service -> (gRPC, metrics) on 127.0.0.1
    migrate: subprocess.CompletedProcess[str] | None = None
    startup: dict[str, ds.ProbeOutcome] = field(default_factory=dict)
    stop_codes: dict[str, int] = field(default_factory=dict)
    torn_down: bool = False

    def container(self, service: str) -> str:
        return f"{self.run}-{service}"

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service][0]}"

    def token(self) -> str:
        """A bearer token of the principal ``tester`` (every role)."""
        from services.common.identities import mint

        return mint(self.jwt_key.encode(), "tester", issuer=ISSUER, audience=AUDIENCE, algorithm="HS256")

    def channel(self, service: str) -> grpc.Channel:
        """A channel presenting :meth:`token`."""
        from services.cli.connection import channel_for

        return channel_for(self.address(service), token=self.token())

    def start(self, service: str) -> None:
        grpc_port, metrics_port = SERVICES[service]
        self.ports[service] = (ds.free_port(), ds.free_port())
        # The store on the volume: Risk, the OMS and the Exchange (which records what it executed).
        store = ["--volume", f"{self.run}-data:/var/lib/tessera"]
        self.podman.run(
            "run", "--detach", "--name", self.container(service), "--network", f"{self.run}-net",
            "--network-alias", service, "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            *store,
            "--secret", f"{self.run}-hmac,type=env,target=AIS_RISK_HMAC_SECRET",
            "--env", f"AIS_RISK_HMAC_KEY_ID={self.key_id}",
            # Identities: HS256 tokens with a shared key (the services mint their own), and the
            # entitlements file, both podman secrets mounted as files under /run/secrets (a
            # tmpfs: on a read-only root the secrets' mount points cannot be made otherwise).
            "--tmpfs", "/run/secrets",
            "--secret", f"{self.run}-jwt,type=mount,target=jwt-key",
            "--secret", f"{self.run}-entitlements,type=mount,target=entitlements.yaml",
            "--env", "TESSERA_JWT_HMAC_KEY_FILE=/run/secrets/jwt-key",
            "--env", f"TESSERA_JWT_ISSUER={ISSUER}", "--env", f"TESSERA_JWT_AUDIENCE={AUDIENCE}",
            "--env", "TESSERA_ENTITLEMENTS_FILE=/run/secrets/entitlements.yaml",
            "--env", "TESSERA_SERVICE_PRINCIPAL=tessera-service",
            "--env", "TESSERA_EXCHANGE_ADDRESS=exchange:50053",
            "--publish", f"127.0.0.1:{self.ports[service][0]}:{grpc_port}",
            "--publish", f"127.0.0.1:{self.ports[service][1]}:{metrics_port}",
            self.image, service,
        )

    def teardown(self) -> None:
        """SIGTERM every service (what ``docker stop`` sends), then remove all the run made."""
        if self.torn_down:
            return
        self.torn_down = True
        for service in reversed(SERVICES):
            name = self.container(service)
            if self.podman.run("container", "exists", name, check=False).returncode == 0:
                self.podman.run("stop", "--time", "20", name, check=False)
                code = self.podman.out("inspect", "--format", "{{.State.ExitCode}}", name, check=False)
                self.stop_codes[service] = int(code) if code.lstrip("-").isdigit() else -1
        self.podman.remove_everything_named(self.run)


@pytest.fixture(scope="module")
def by_hand(podman: Podman, images: Images, declared_probes: dict[str, dict[str, Any]]) -> Iterator[ByHand]:
    run = ds.new_run_name()
    deployment = ByHand(podman, images.tessera, run, key_id=f"{run}-k1", secret=secrets.token_urlsafe(36))
    try:
        podman.run("network", "create", f"{run}-net")
        podman.run("volume", "create", f"{run}-data")
        podman.run("secret", "create", f"{run}-hmac", "-", input=deployment.secret)
        podman.run("secret", "create", f"{run}-jwt", "-", input=deployment.jwt_key)
        podman.run("secret", "create", f"{run}-entitlements", "-", input=ENTITLEMENTS)
        deployment.migrate = podman.run(
            "run", "--rm", "--name", f"{run}-migrate", "--network", f"{run}-net", "--read-only",
            "--cap-drop", "ALL", "--volume", f"{run}-data:/var/lib/tessera", images.tessera, "migrate", check=False,
        )
        for service in SERVICES:
            deployment.start(service)
        for service in SERVICES:
            probe = declared_probes[service]["startupProbe"]
            deployment.startup[service] = ds.run_probe(
                "startupProbe", probe, ds.grpc_health_check(deployment.address(service))
            )
        yield deployment
    finally:
        deployment.teardown()


def test_the_image_runs_the_compiled_core_as_the_dockerfile_user(podman: Podman, images: Images) -> None:
    config = podman.out("image", "inspect", "--format", "{{.Config.User}} {{json .Config.Entrypoint}}", images.tessera)
    assert config == f'{DOCKERFILE_USER.group(1)}:{DOCKERFILE_USER.group(2)} ["tessera-entrypoint"]'
    implementation = podman.out("run", "--rm", "--read-only", "--entrypoint", "python", images.tessera,
                                "-I", "-c", "import core_ext; print(core_ext.IMPLEMENTATION)")
    assert implementation == "cython"


def test_migrate_brings_the_store_to_the_newest_revision(by_hand: ByHand) -> None:
    assert by_hand.migrate is not None and by_hand.migrate.returncode == 0, by_hand.migrate
    head = ds.head_revision()
    assert f"is at revision {head}" in by_hand.migrate.stdout + by_hand.migrate.stderr
    stored = by_hand.podman.out(
        "exec", by_hand.container("oms"), "python", "-c",
        "import sqlite3; print(sqlite3.connect('var/tessera.db').execute('select version_num from alembic_version')"
        ".fetchone()[0])",
    )
    assert stored == head


def test_each_service_passes_the_grpc_probes_its_deployment_declares(
    by_hand: ByHand, declared_probes: dict[str, dict[str, Any]]
) -> None:
    assert {s: o.ok for s, o in by_hand.startup.items()} == {s: True for s in SERVICES}, by_hand.startup
    for service in SERVICES:
        for kind in ("readinessProbe", "livenessProbe"):
            outcome = ds.run_probe(kind, declared_probes[service][kind], ds.grpc_health_check(by_hand.address(service)))
            assert outcome.ok, (service, outcome)


def test_orders_sent_with_the_tessera_command_are_filled(by_hand: ByHand) -> None:
    risk, oms = by_hand.address("risk"), by_hand.address("oms")
    account = f"{by_hand.run}-acct"
    for side in ("buy", "sell"):
        result = ds.tessera("submit", "BTCUSDT", side, "0.01", "--account", account, risk=risk, oms=oms,
                            token=by_hand.token())
        assert result.returncode == 0, ds.show(result)
        assert "oms: FILLED" in result.stdout, ds.show(result)
    listed = ds.tessera("orders", "--account", account, "--status", "filled", oms=oms, token=by_hand.token())
    assert listed.returncode == 0, ds.show(listed)
    assert listed.stdout.count(" FILLED ") == 2, ds.show(listed)


def test_every_service_runs_as_the_image_user_on_a_read_only_root(by_hand: ByHand) -> None:
    uid, gid = int(DOCKERFILE_USER.group(1)), int(DOCKERFILE_USER.group(2))
    for service in SERVICES:
        process = ds.process_view(by_hand.podman, by_hand.container(service))
        assert (process.uid, process.gid) == (uid, gid), (service, process)
        assert f"services.{service}" in process.command, process
        assert "ro" in process.root_mount_options, process
        assert process.effective_capabilities == 0 and process.no_new_privileges, process


def test_the_hmac_secret_reached_every_service(by_hand: ByHand) -> None:
    with by_hand.channel("risk") as risk_channel, by_hand.channel("oms") as oms_channel:
        intent = pb.OrderIntent(account=f"{by_hand.run}-secret", venue="aster", market_type=pb.MARKET_TYPE_FUTURES,
                                symbol="ETHUSDT", side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_MARKET,
                                quantity="0.1", time_in_force=pb.TIME_IN_FORCE_GTC)
        approved = risk_pb2_grpc.RiskServiceStub(risk_channel).ValidateOrder(
            risk_pb2.ValidateOrderRequest(order=intent), timeout=30)
        assert approved.order.status == pb.ORDER_STATUS_APPROVED, approved
        # Risk signed with the deployed key, under the deployed key id ...
        verified = ds.verify_token_with(by_hand.key_id, by_hand.secret, approved.order, approved.risk_token)
        assert (verified.ok, verified.key_id) == (True, by_hand.key_id), verified.reason
        # ... and the OMS and the Exchange, which both verify it, accepted it.
        submitted = oms_pb2_grpc.OrderManagementServiceStub(oms_channel).SubmitOrder(
            oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=approved.risk_token), timeout=30)
        assert submitted.order.status == pb.ORDER_STATUS_FILLED, submitted.order


def test_verify_store_finds_no_violation(by_hand: ByHand) -> None:
    result = by_hand.podman.run("exec", by_hand.container("oms"), "tessera", "verify-store", "--require-terminal",
                                check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no violations" in result.stdout


def test_stopping_ends_every_service_cleanly_and_removal_leaves_nothing(by_hand: ByHand) -> None:
    by_hand.teardown()
    assert by_hand.stop_codes == {service: 0 for service in SERVICES}
    assert by_hand.podman.leftovers(by_hand.run) == {w: [] for w in ("pod", "container", "volume", "secret", "network")}
