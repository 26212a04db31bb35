"""Every service answers grpc.health.v1, lists itself through reflection, and stops
gracefully (exit code 0) on SIGTERM. Uses a stack of its own: the last test stops it."""

from __future__ import annotations

from typing import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from services.cli.stack import Stack

import tessera_e2e as e2e

SERVICES = {
    "risk": ("tessera.risk.v1.RiskService", "ValidateOrder"),
    "oms": ("tessera.oms.v1.OrderManagementService", "SubmitOrder"),
    "exchange": ("tessera.exchange.v1.ExchangeService", "ExecuteOrder"),
}


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("health")
    running = e2e.start_stack(e2e.sqlite_url(directory / "tessera.db"), directory / "logs")
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("name", list(SERVICES))
def test_health_serving(own_stack, name):
    service, _ = SERVICES[name]
    health = own_stack.health(name)
    for checked in ("", service):
        answer = health.Check(health_pb2.HealthCheckRequest(service=checked), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, checked
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("name", list(SERVICES))
def test_reflection_lists_the_service(own_stack, name):
    service, method = SERVICES[name]
    database = ProtoReflectionDescriptorDatabase(own_stack.channel(name))
    listed = set(database.get_services())
    assert service in listed
    assert "grpc.health.v1.Health" in listed
    pool = descriptor_pool.DescriptorPool(database)
    described = pool.FindServiceByName(service)
    assert method in [m.name for m in described.methods]


def test_sigterm_stops_every_service_gracefully(own_stack):
    codes = own_stack.stop()
    assert codes == {"risk": 0, "oms": 0, "exchange": 0}, own_stack.logs()
    for name, service in own_stack.processes.items():
        lines = service.stdout().splitlines()
        assert lines[0].startswith(f"{name} listening on ")
        assert lines[-1] == f"{name} stopped", service.stdout()
        assert "Traceback" not in service.stderr(), service.stderr()
