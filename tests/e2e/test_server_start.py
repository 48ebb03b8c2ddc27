"""Starting a server: indexes are replayed before health reports SERVING; a second server on
a port that is taken fails at once with the address in the error, instead of sharing the
port (SO_REUSEPORT) and silently splitting the traffic."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from veclink.service.server import Server, build_store
from veclink.service.settings import load_settings

from tests.fixtures.server import free_port, on_server_loop
from veclink.client import Client
from veclink.errors import FailedPrecondition
from veclink.wire.types import RecordIn


def _settings(data_dir: Path, port: int):  # type: ignore[no-untyped-def]
    return load_settings(
        env={},
        overrides={
            "server": {"port": port, "metrics_port": 0},
            "storage": {"data_dir": str(data_dir)},
        },
    )


def test_a_second_server_on_the_same_port_is_refused(tmp_path: Path) -> None:
    async def run() -> None:
        first = await Server.start(_settings(tmp_path / "a", 0))
        try:
            with pytest.raises(FailedPrecondition) as info:
                await Server.start(_settings(tmp_path / "b", first.port))
            assert f"127.0.0.1:{first.port}" in str(info.value)
            assert "in use" in str(info.value)
            # the first server still has the port to itself and answers
            address = f"127.0.0.1:{first.port}"
            await asyncio.to_thread(_list_collections, address)
        finally:
            await first.stop(0)

    on_server_loop(run())


def _list_collections(address: str) -> None:
    with Client(address) as c:
        assert c.list_collections() == []


@pytest.mark.slow
def test_veclink_serve_on_a_busy_port_exits_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                str(Path(sys.executable).with_name("veclink")),
                "serve",
                "--data-dir",
                str(tmp_path / "data"),
                "--port",
                str(port),
                "--metrics-port",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: the address is in use" in proc.stderr
    assert "loading encoder" not in proc.stderr  # it failed before loading any model


def _health(address: str) -> int:
    with Client(address) as c:
        stub = health_pb2_grpc.HealthStub(c.channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status)


def test_indexes_are_replayed_before_health_says_serving(tmp_path: Path) -> None:
    port = free_port()
    settings = _settings(tmp_path / "data", port)
    store = build_store(settings)
    store.create_collection("c", dim=4, metric="ip", index_kind="flat")
    store.upsert("c", [RecordIn(id="a", vector=np.ones(4, np.float32), text="t")])
    for coll in store._open.values():  # as after a kill: no snapshot, the WAL holds the write
        coll.index.abandon()
    store.engine.dispose()
    store = build_store(settings)
    seen: dict[str, object] = {}

    def prepare() -> None:  # runs after the bind, after the replay, before SERVING
        seen["replayed"] = "c" in store._open and len(store._open["c"].index) == 1
        seen["health"] = _health(f"127.0.0.1:{port}")

    async def run() -> None:
        server = await Server.start(settings, store, prepare)
        try:
            seen["after"] = await asyncio.to_thread(_health, f"127.0.0.1:{port}")
        finally:
            await server.stop(0)

    on_server_loop(run())
    assert seen == {
        "replayed": True,
        "health": health_pb2.HealthCheckResponse.NOT_SERVING,
        "after": health_pb2.HealthCheckResponse.SERVING,
    }
