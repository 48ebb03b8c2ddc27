"""A second server on a port that is taken fails at once with the address in the error,
instead of sharing the port (SO_REUSEPORT) and silently splitting the traffic."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from veclink.service.server import Server
from veclink.service.settings import load_settings

from veclink.client import Client
from veclink.errors import FailedPrecondition


def _settings(data_dir: Path, port: int):  # type: ignore[no-untyped-def]
    return load_settings(
        env={}, overrides={"server": {"port": port}, "storage": {"data_dir": str(data_dir)}}
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

    asyncio.run(run())


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
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: the address is in use" in proc.stderr
    assert "loading encoder" not in proc.stderr  # it failed before loading any model
