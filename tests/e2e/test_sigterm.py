"""SIGTERM on a real `veclink serve`: NOT_SERVING, drain, checkpoint, close; JSON logs.

One server process with a flat and a partitioned collection gets SIGTERM while a slow
UpsertStream (one batch every 0.2 s) and a loop of unary upserts run. Checked: health turns
NOT_SERVING (a health Watch hears it, /readyz answers 503) while the stream is still being
served; the stream finishes within the grace period and is acknowledged; the process exits
0; every index was snapshotted (its WAL files are empty, and the next start replays 0 WAL
records); every acknowledged write is there after the restart; every stderr line is JSON,
and the lines about RPCs carry the request id (the client's own when it sent one).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from veclink.v1 import points_pb2, points_pb2_grpc

from tests.fixtures.server import free_port
from veclink.client import Client
from veclink.errors import VeclinkError

pytestmark = pytest.mark.slow

DIM = 4
KINDS = {"flat": "flat", "parted": "partitioned"}
STREAM_BATCHES = 10
STREAM_PAUSE_S = 0.2
CLIENT_REQUEST_ID = "sigterm-test-1"
_METRICS = re.compile(r"metrics, /healthz and /readyz on http://[^:]+:(\d+)")
_REPLAYED = re.compile(r"replayed (\d+) collections in [0-9.]+ s \((\d+) WAL records\)")


def _vector(rid: str) -> np.ndarray:
    """A vector that only ``rid`` has (stable across processes, unlike ``hash``)."""
    return np.random.default_rng(zlib.crc32(rid.encode())).normal(size=DIM).astype(np.float32)


def _records(ids: list[str]) -> list[dict[str, Any]]:
    return [{"id": i, "vector": _vector(i), "payload": {"id": i}} for i in ids]


class ServeProcess:
    """`veclink serve` with separate stdout and stderr, read by threads into lists."""

    def __init__(self, data_dir: Path) -> None:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        cmd = [
            str(Path(sys.executable).with_name("veclink")),
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--metrics-port",
            "0",
        ]
        env = {**os.environ, "VECLINK_LOG_LEVEL": "DEBUG", "VECLINK_LOG_FORMAT": "json"}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.out: list[str] = []
        self.err: list[str] = []
        listening = threading.Event()

        def read(stream: Any, into: list[str]) -> None:
            for line in stream:
                into.append(line)
                if "veclink listening on" in line:
                    listening.set()
            listening.set()

        self.readers = [
            threading.Thread(target=read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self.readers:
            t.start()
        if not listening.wait(120) or self.proc.poll() is not None:
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.err[-30:]))

    def messages(self) -> list[str]:
        return [json.loads(line)["message"] for line in self.err if line.startswith("{")]

    def metrics_port(self) -> int:
        ports = [int(m.group(1)) for m in map(_METRICS.search, self.messages()) if m]
        assert ports, "the server did not log its metrics port"
        return ports[0]

    def finish(self, timeout: float = 30) -> int:
        """Wait for the exit and for the readers to see the end of both pipes."""
        code = self.proc.wait(timeout=timeout)
        for t in self.readers:
            t.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for p in started:  # a failed test leaves no server behind
        p.kill()


def _readyz(port: int) -> int | None:
    """The /readyz status code; None once the port is closed."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def test_sigterm_drains_checkpoints_and_logs_json(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    data = tmp_path / "data"
    server = ServeProcess(data)
    processes.append(server)
    acknowledged: set[str] = set()
    with Client(server.address) as c:
        for name, kind in KINDS.items():
            c.create_collection(name, dimensions=DIM, metric="ip", index_kind=kind)
            for b in range(5):
                ids = [f"{name}-pre-{b}-{i}" for i in range(10)]
                c.upsert(name, _records(ids))
                acknowledged.update(ids)

    # a client that names its request: the id comes back and is in the log
    with grpc.insecure_channel(server.address) as channel:
        points = points_pb2_grpc.PointsStub(channel)
        with pytest.raises(grpc.RpcError) as missing:
            points.Upsert(
                points_pb2.UpsertRequest(collection="missing"),
                metadata=(("x-request-id", CLIENT_REQUEST_ID),),
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert ("x-request-id", CLIENT_REQUEST_ID) in missing.value.trailing_metadata()

    # a health watcher, a slow stream and a unary writer are running when SIGTERM comes
    watched: list[tuple[float, int]] = []
    watch_end: list[str] = []
    watching = threading.Event()

    def watch() -> None:
        with grpc.insecure_channel(server.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                for resp in stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60):
                    watched.append((time.monotonic(), resp.status))
                    watching.set()
                watch_end.append("OK")
            except grpc.RpcError as exc:
                watch_end.append(exc.code().name)
            watching.set()

    stream_ids = [[f"flat-stream-{b}-{i}" for i in range(5)] for b in range(STREAM_BATCHES)]
    streaming = threading.Event()
    stream_result: list[Any] = []

    def stream() -> None:
        def batches() -> Iterator[list[dict[str, Any]]]:
            for b, ids in enumerate(stream_ids):
                if b:
                    time.sleep(STREAM_PAUSE_S)
                if b == 2:
                    streaming.set()
                yield _records(ids)

        with Client(server.address) as c:
            try:
                stream_result.append(c.upsert_stream("flat", batches()))
            except VeclinkError as exc:
                stream_result.append(exc)
            stream_result.append(time.monotonic())
        streaming.set()

    unary_ok: list[str] = []
    unary_maybe: list[str] = []
    unary_error: list[VeclinkError] = []

    def unary() -> None:
        with Client(server.address, timeout=20) as c:
            for n in range(10_000):
                ids = [f"parted-unary-{n}-{i}" for i in range(3)]
                try:
                    c.upsert("parted", _records(ids))
                except VeclinkError as exc:  # refused once the server stops taking calls
                    unary_maybe.extend(ids)
                    unary_error.append(exc)
                    return
                unary_ok.extend(ids)
                time.sleep(0.02)

    threads = [threading.Thread(target=f) for f in (watch, stream, unary)]
    threads[0].start()
    assert watching.wait(30) and watched, f"no health status came: {watch_end}"
    for t in threads[1:]:
        t.start()
    assert streaming.wait(30)
    metrics_port = server.metrics_port()
    assert _readyz(metrics_port) == 200
    sigterm = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)

    readyz: list[int | None] = []
    readyz_at = sigterm
    while (not readyz or readyz[-1] == 200) and time.monotonic() - sigterm < 5:
        readyz.append(_readyz(metrics_port))
        readyz_at = time.monotonic()
    for t in threads:
        t.join(timeout=30)
    assert server.finish() == 0, "".join(server.err[-20:])
    exited = time.monotonic()

    # the stream was in flight during the drain, and finished (acknowledged) within grace
    assert len(stream_result) == 2, stream_result
    upserted, stream_done = stream_result
    assert upserted == STREAM_BATCHES * 5, upserted
    acknowledged.update(i for ids in stream_ids for i in ids)
    assert stream_done > sigterm and exited - sigterm < 5.0 + 3.0
    # health said NOT_SERVING while that call was still being served
    assert readyz[-1] == 503, readyz
    assert readyz_at < stream_done
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert [status for _, status in watched] == [serving, not_serving], watched
    assert watch_end == ["OK"]  # the watcher was told and its stream ended, not cancelled
    assert sigterm < watched[-1][0] < stream_done
    # new calls were refused; the ones before were acknowledged
    assert unary_ok and len(unary_error) == 1, unary_error
    # refused (UNAVAILABLE), or caught between arriving and the server's stop (CANCELLED):
    # either way not acknowledged, and its ids only count as "maybe" below
    assert str(unary_error[0]).split(":")[0] in ("UNAVAILABLE", "CANCELLED"), unary_error
    acknowledged.update(unary_ok)

    # checkpointed: every index's WAL is empty
    index_dirs = sorted(p for p in (data / "indexes").iterdir() if p.is_dir())
    assert len(index_dirs) == len(KINDS)
    for index_dir in index_dirs:
        segments = list((index_dir / "wal").iterdir())
        assert segments and all(s.stat().st_size == 0 for s in segments), segments

    # every stderr line is JSON; the lines about RPCs carry their request id
    lines = [json.loads(line) for line in server.err]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    rpc_lines = [
        e
        for e in lines
        if e["logger"] in ("veclink.rpc", "veclink.service.servicers", "veclink.service.decoding")
    ]
    # one line per call at least: creates, pre-writes, the named one, stream, unary writes
    assert len(rpc_lines) >= 2 + 10 + 1 + 1 + len(unary_ok) // 3
    assert all(e.get("request_id") and e.get("method") for e in rpc_lines)
    named = [e for e in rpc_lines if e["request_id"] == CLIENT_REQUEST_ID]
    assert {e["logger"] for e in named} == {"veclink.rpc", "veclink.service.servicers"}
    assert all(e["method"] == "/veclink.v1.Points/Upsert" for e in named)
    generated = {e["request_id"] for e in rpc_lines} - {CLIENT_REQUEST_ID}
    assert all(re.fullmatch(r"[0-9a-f]{32}", r) for r in generated)
    assert len(generated) >= 10  # one per call, not one per connection
    messages = [e["message"] for e in lines]
    assert any(m.startswith("SIGTERM: shutting down") for m in messages)
    assert f"checkpointed and closed {len(KINDS)} collections" in messages
    # the server's own last word; gRPC's may come after it (a line about a stream whose
    # handler task ends as the server stops, after the client had its answer)
    own = [e["message"] for e in lines if e["logger"].startswith("veclink")]
    assert own[-1] == "stopped", own[-3:]

    # restart: nothing to replay, and every acknowledged write is there, vector and all
    again = ServeProcess(data)
    processes.append(again)
    replayed = [m.groups() for m in map(_REPLAYED.search, again.messages()) if m]
    assert replayed == [(str(len(KINDS)), "0")]
    with Client(again.address) as c:
        present: set[str] = set()
        for name in KINDS:
            mine = sorted(i for i in acknowledged if i.startswith(f"{name}-"))
            got, missing_ids = c.get(name, mine, with_vectors=True)
            assert not missing_ids, missing_ids[:5]
            for r in got:
                np.testing.assert_allclose(r.vector, _vector(r.id), rtol=1e-6)
                assert r.payload == {"id": r.id}
            count = c.get_collection(name).count
            maybe = len([i for i in unary_maybe if i.startswith(f"{name}-")])
            assert len(mine) <= count <= len(mine) + maybe
            present.update(mine)
        assert present == acknowledged
    again.proc.send_signal(signal.SIGTERM)
    assert again.finish() == 0
