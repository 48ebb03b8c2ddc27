"""`veclink serve` as a real process: the README's demo query, and kill -9 durability."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fixtures.server import free_port
from veclink.client import Client

pytestmark = pytest.mark.slow


@contextmanager
def serve(data_dir: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    veclink = Path(sys.executable).with_name("veclink")
    proc = subprocess.Popen(
        [
            str(veclink),
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--metrics-port",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            if "veclink listening on" in line:
                break
        else:
            raise TimeoutError("server did not start")
        yield f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_readme_demo_query(tmp_path: Path) -> None:
    with serve(tmp_path / "data", "--demo") as address:
        out = subprocess.run(
            [
                str(Path(sys.executable).with_name("veclink")),
                "search",
                "wordnet",
                "a domestic animal that barks",
                "-k",
                "5",
                "--json",
                "--server",
                address,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    hits = json.loads(out)
    assert len(hits) == 5
    dog = [h for h in hits if h["id"] == "02084071n"]
    assert dog and dog[0]["text"].startswith("dog (noun): a member of the genus Canis")


def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    acknowledged: list[str] = []
    with serve(data) as address:
        with Client(address) as c:
            c.create_collection("v", dimensions=4, metric="ip")
            for b in range(20):
                batch = [{"id": f"{b}-{i}", "vector": [b, i, 1, 0]} for i in range(50)]
                c.upsert("v", batch)
                acknowledged += [r["id"] for r in batch]
            c.delete("v", [f"0-{i}" for i in range(50)])
        # crash: no shutdown, no snapshot
        pids = subprocess.run(["pgrep", "-f", f"--data-dir {data}"], capture_output=True, text=True)
        for pid in pids.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.5)
    with serve(data) as address, Client(address) as c:
        assert c.get_collection("v").count == 19 * 50
        got, missing = c.get("v", acknowledged[50:])
        assert not missing
        hits = c.search("v", vector=[0, 1, 1, 0], k=1000)
        assert not [h for h in hits if h.id.startswith("0-")]
