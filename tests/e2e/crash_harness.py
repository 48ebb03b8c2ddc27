"""Crash harness: `veclink serve` as a subprocess, writers keeping a ledger, SIGKILL, compare.

Used by tests/e2e/test_crash.py (a few kills per configuration) and bench/crash.py (many).
Each writer thread owns its own ids and does one operation at a time: upserts of new and
existing ids (a replacement brings a new vector, text and payload), deletes, UpsertStreams
of several batches, and batches the server must reject (one record of the wrong dimension).
Every record written carries one token in its vector (looked up exactly), its text and its
payload, so a record whose parts come from different writes is seen as torn.

After each SIGKILL the server restarts and every id is read back with its vector. For each
id the acknowledged state (the ledger) must be what is there, except that the one operation
per writer in flight when the server died may have happened or not: as a whole, batch by
batch. Counted: lost (an acknowledged write is gone or older), torn (parts of different
writes, or half a batch), resurrected (a deleted record is back), phantom (a write that was
rejected or never sent, or ids the ledger does not know, e.g. in search results).
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from veclink.client import Client
from veclink.errors import InvalidArgument, VeclinkError

COLLECTION = "crash"
_REPLAY = re.compile(r"replayed \d+ collections? in ([0-9.]+) s")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CrashConfig:
    #: index kind of the collection: flat or partitioned
    kind: str
    #: catalog URL ("" = SQLite in the data directory)
    database_url: str = ""
    #: SIGKILLs (each followed by a restart and a full comparison)
    kills: int = 3
    #: concurrent writer threads
    writers: int = 2
    #: ids each writer draws from (so replacements and deletes of existing ids happen)
    ids_per_writer: int = 150
    #: vector dimension
    dim: int = 8
    #: seconds writers run before a kill, drawn uniformly from this range
    run_seconds: tuple[float, float] = (0.3, 2.0)
    #: the server's storage.checkpoint_records (small, so kills also hit snapshots; 0: leave
    #: the server's setting alone)
    checkpoint_records: int = 40
    #: seed of every random choice
    seed: int = 0


@dataclasses.dataclass(kw_only=True)
class CrashReport:
    kills: int = 0
    acknowledged: int = 0
    lost: int = 0
    torn: int = 0
    resurrected: int = 0
    phantom: int = 0
    #: unacknowledged batches cut off by a kill, and how many of them had happened
    in_flight: int = 0
    in_flight_applied: int = 0
    wal_bytes_max: int = 0
    replay_seconds_max: float = 0.0
    #: one line per violation or unexpected error
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def violations(self) -> int:
        return self.lost + self.torn + self.resurrected + self.phantom


class ServerProcess:
    """`veclink serve` on a free port; ``start`` returns once it reports SERVING."""

    def __init__(self, data_dir: Path, config: CrashConfig) -> None:
        self.data_dir = data_dir
        self.config = config
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.address = ""

    def start(self, timeout: float = 300.0) -> float | None:
        """Start and wait for SERVING; returns the replay seconds the server logged."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        self.address = f"127.0.0.1:{port}"
        cmd = [
            str(Path(sys.executable).with_name("veclink")),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(port),
            "--index-kind",
            self.config.kind,
            "--metrics-port",
            "0",
        ]
        if self.config.database_url:
            cmd += ["--database-url", self.config.database_url]
        env = dict(os.environ)
        if self.config.checkpoint_records:
            env["VECLINK__STORAGE__CHECKPOINT_RECORDS"] = str(self.config.checkpoint_records)
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        ready = threading.Event()
        lines: list[str] = []
        self.lines = lines

        def read(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if "veclink listening on" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, args=(self.proc,), daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            raise RuntimeError("server did not start:\n" + "".join(lines[-30:]))
        with Client(self.address) as c:
            health = health_pb2_grpc.HealthStub(c.channel)
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
            if status != health_pb2.HealthCheckResponse.SERVING:
                raise RuntimeError(f"server listening but health says {status}")
        replays = [float(m.group(1)) for m in map(_REPLAY.search, lines) if m]
        return replays[-1] if replays else None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Ledger:
    """What each id must be: the token of its last acknowledged write (None: absent)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.state: dict[str, int | None] = {}
        #: id -> tokens (None: deleted) an unacknowledged operation may have left
        self.pending: dict[str, set[int | None]] = {}
        #: unacknowledged batches: each all-or-nothing
        self.pending_batches: list[dict[str, int | None]] = []
        self.by_vector: dict[bytes, int] = {}
        self.sent: dict[int, str] = {}  # token -> id
        self.rejected: set[int] = set()
        self._next = 0
        self._lock = threading.Lock()
        self.acknowledged = 0

    def record(self, rid: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self._next += 1
            token = self._next
        vec = np.random.default_rng(token).normal(size=self.dim).astype(np.float32)
        with self._lock:
            self.by_vector[vec.tobytes()] = token
            self.sent[token] = rid
        return token, {
            "id": rid,
            "vector": vec,
            "text": f"{rid} written by #{token}",
            "payload": {"token": str(token), "nested": {"id": rid}},
        }


def _writer(
    w: int,
    address: str,
    ledger: Ledger,
    config: CrashConfig,
    rng: random.Random,
    stop: threading.Event,
    killed: threading.Event,
    report: CrashReport,
) -> None:
    pool = [f"w{w}-{j}" for j in range(config.ids_per_writer)]
    with Client(address, timeout=30) as client:
        while not stop.is_set():
            op = rng.choices(["upsert", "delete", "stream", "reject"], [45, 20, 25, 10])[0]
            if op == "stream":
                picked = rng.sample(pool, rng.randint(2, 6))
                cut = sorted(rng.sample(range(1, len(picked)), rng.randint(1, len(picked) - 1)))
                groups = [picked[a:b] for a, b in zip([0, *cut], [*cut, len(picked)], strict=True)]
            else:
                groups = [rng.sample(pool, rng.randint(1, 4))]
            batches: list[dict[str, int | None]] = []
            payloads: list[list[dict[str, Any]]] = []
            for ids in groups:
                if op == "delete":
                    batches.append(dict.fromkeys(ids))
                    continue
                tokens, records = zip(*(ledger.record(i) for i in ids), strict=True)
                batches.append(dict(zip(ids, tokens, strict=True)))
                payloads.append(list(records))
            try:
                if op == "upsert":
                    client.upsert(COLLECTION, payloads[0])
                elif op == "stream":
                    client.upsert_stream(COLLECTION, payloads)
                elif op == "delete":
                    client.delete(COLLECTION, list(batches[0]))
                else:
                    bad = {"id": f"w{w}-bad", "vector": np.zeros(config.dim + 1, np.float32)}
                    try:
                        client.upsert(COLLECTION, [*payloads[0], bad])
                    except InvalidArgument:
                        ledger.rejected.update(t for t in batches[0].values() if t is not None)
                        continue
                    report.problems.append(f"writer {w}: a batch with a bad record was accepted")
            except VeclinkError as exc:
                if not killed.is_set():
                    report.problems.append(f"writer {w}: {op} failed while serving: {exc}")
                for batch in batches:
                    for rid, token in batch.items():
                        ledger.pending.setdefault(rid, set()).add(token)
                    ledger.pending_batches.append(batch)
                return
            for batch in batches:
                ledger.state.update(batch)
            ledger.acknowledged += 1


def _observe(client: Client, ledger: Ledger, ids: list[str]) -> dict[str, tuple[int, ...] | None]:
    got, _ = client.get(COLLECTION, ids, with_vectors=True)
    seen: dict[str, tuple[int, ...] | None] = dict.fromkeys(ids)
    for r in got:
        vec = np.asarray(r.vector, dtype=np.float32)
        text_token = int(r.text.rsplit("#", 1)[1]) if r.text and "#" in r.text else -1
        payload_token = int(r.payload.get("token", -1))
        seen[r.id] = (ledger.by_vector.get(vec.tobytes(), -1), text_token, payload_token)
    return seen


def _compare(client: Client, ledger: Ledger, config: CrashConfig, report: CrashReport) -> None:
    ids = sorted({f"w{w}-{j}" for w in range(config.writers) for j in range(config.ids_per_writer)})
    seen = _observe(client, ledger, ids)
    for rid in ids:
        obs = seen[rid]
        expected = ledger.state.get(rid)
        allowed = {expected} | ledger.pending.get(rid, set())
        if obs is None:
            if None not in allowed:
                report.lost += 1
                report.problems.append(f"{rid}: lost (expected #{expected})")
            continue
        token = obs[0]
        if len(set(obs)) != 1 or ledger.sent.get(token) != rid:
            if token in ledger.rejected or token not in ledger.sent:
                report.phantom += 1
                report.problems.append(f"{rid}: phantom write {obs}")
            else:
                report.torn += 1
                report.problems.append(f"{rid}: torn (vector/text/payload from {obs})")
        elif token in allowed:
            continue
        elif token in ledger.rejected:
            report.phantom += 1
            report.problems.append(f"{rid}: a rejected write #{token} is visible")
        elif expected is None:
            report.resurrected += 1
            report.problems.append(f"{rid}: deleted, but #{token} is back")
        else:
            report.lost += 1
            report.problems.append(f"{rid}: acknowledged #{expected} lost, #{token} is there")
    for batch in ledger.pending_batches:  # each unacknowledged batch happened whole or not
        happened = {
            (seen[rid] is None)
            if token is None
            else (seen[rid] is not None and seen[rid][0] == token)
            for rid, token in batch.items()
            if token != ledger.state.get(rid)  # a no-op for this id says nothing
        }
        if len(happened) > 1:
            report.torn += 1
            report.problems.append(f"half of an unacknowledged batch is visible: {batch}")
        elif happened:
            report.in_flight += 1
            report.in_flight_applied += happened == {True}
    present = {rid for rid, obs in seen.items() if obs is not None}
    count = client.get_collection(COLLECTION).count
    if count != len(present):
        report.phantom += abs(count - len(present))
        report.problems.append(f"collection counts {count} records, Get finds {len(present)}")
    hits = client.search(COLLECTION, vector=np.ones(config.dim, np.float32), k=1000)
    extra = {h.id for h in hits} - present
    if extra:
        report.phantom += len(extra)
        report.problems.append(f"search returns ids Get does not: {sorted(extra)[:5]}")
    if config.kind == "flat" and {h.id for h in hits} != present:
        report.lost += len(present - {h.id for h in hits})
        report.problems.append("exact search misses stored records")
    # what was observed is now the truth the next round builds on
    for rid in ids:
        ledger.state[rid] = None if seen[rid] is None else seen[rid][0]  # type: ignore[index]
    ledger.pending.clear()
    ledger.pending_batches.clear()


def wal_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "indexes").glob("*/wal/*") if p.is_file())


def run_crashes(data_dir: Path, config: CrashConfig, log: Any = None) -> CrashReport:
    """Run ``config.kills`` kill/restart/compare rounds; returns the counts."""
    rng = random.Random(config.seed)
    ledger = Ledger(config.dim)
    report = CrashReport()
    server = ServerProcess(data_dir, config)
    try:
        server.start()
        with Client(server.address) as c:
            c.create_collection(
                COLLECTION, dimensions=config.dim, metric="ip", index_kind=config.kind
            )
        for round_ in range(config.kills):
            stop, killed = threading.Event(), threading.Event()
            threads = [
                threading.Thread(
                    target=_writer,
                    args=(
                        w,
                        server.address,
                        ledger,
                        config,
                        random.Random(rng.random()),
                        stop,
                        killed,
                        report,
                    ),
                )
                for w in range(config.writers)
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(*config.run_seconds))
            killed.set()
            server.kill()
            stop.set()
            for t in threads:
                t.join(timeout=120)
            report.kills += 1
            report.wal_bytes_max = max(report.wal_bytes_max, wal_bytes(data_dir))
            replay = server.start()
            report.replay_seconds_max = max(report.replay_seconds_max, replay or 0.0)
            with Client(server.address) as c:
                _compare(c, ledger, config, report)
            if log is not None:
                log(
                    f"kill {round_ + 1}/{config.kills}: {ledger.acknowledged} acknowledged, "
                    f"{report.violations} violations, replay {replay} s"
                )
        report.acknowledged = ledger.acknowledged
    finally:
        server.stop()
    return report
