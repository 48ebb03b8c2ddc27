"""The operations HTTP port: /metrics, /healthz and /readyz mean what they say; else 404."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2
from sqlalchemy import create_engine
from veclink.service.probes import Readiness
from veclink.service.settings import load_settings

from tests.fixtures.server import RunningServer, free_port, server_settings
from veclink.client import Client


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = RunningServer(server_settings(tmp_path_factory.mktemp("probes")))
    yield server
    server.stop()


def _get(server: RunningServer, path: str) -> tuple[int, str]:
    assert server.server.probes is not None
    url = f"http://127.0.0.1:{server.server.probes.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _set_health(server: RunningServer, status: int) -> None:
    asyncio.run_coroutine_threadsafe(server.server.health.set("", status), server.loop).result(5)


def test_metrics_on_by_default_on_their_own_port() -> None:
    settings = load_settings(env={})
    assert settings.server.metrics is True
    assert settings.server.metrics_port == 9464 != settings.server.port


def test_healthz_and_metrics(running: RunningServer) -> None:
    assert _get(running, "/healthz") == (200, "ok\n")
    with Client(running.address) as c:
        c.list_collections()
    code, body = _get(running, "/metrics")
    assert code == 200 and 'veclink_rpcs_total{code="OK",method="ListCollections"}' in body


@pytest.mark.parametrize("path", ["/", "/metricsx", "/healthz/x", "/admin", "/../etc/passwd"])
def test_any_other_path_is_404(running: RunningServer, path: str) -> None:
    assert _get(running, path)[0] == 404


def test_readyz_follows_grpc_health(running: RunningServer) -> None:
    assert _get(running, "/readyz") == (200, "ready\n")
    _set_health(running, health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        code, body = _get(running, "/readyz")
        assert code == 503 and "NOT_SERVING" in body
        assert _get(running, "/healthz")[0] == 200  # alive, just not ready
    finally:
        _set_health(running, health_pb2.HealthCheckResponse.SERVING)
    assert _get(running, "/readyz")[0] == 200


def test_readyz_needs_the_catalog(running: RunningServer) -> None:
    """A catalog that does not answer makes the server unready (a closed PostgreSQL port)."""
    closed = free_port()  # a port nothing listens on
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{closed}/test")
    try:
        ok, reason = Readiness(running.server.health, engine, running.loop)()
    finally:
        engine.dispose()
    assert not ok and "catalog unreachable" in reason
    assert Readiness(running.server.health, running.server.store.engine, running.loop)()[0]


def test_busy_metrics_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        settings = server_settings(tmp_path, server={"metrics_port": busy})
        with pytest.raises(OSError, match="server.metrics_port"):
            RunningServer(settings)


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    server = RunningServer(server_settings(tmp_path, server={"metrics": False}))
    try:
        assert server.server.probes is None
    finally:
        server.stop()
