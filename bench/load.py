"""Load benchmark: concurrent clients against a real `veclink serve` process, over loopback.

Starts the server as a subprocess (``veclink serve`` on 127.0.0.1, a fresh data directory),
creates a text collection with the default encoder and a vector-only collection, then runs
``--clients`` threads, each with its own ``veclink.client.Client``, that mix Embed, Upsert
and Search on both collections for a warm-up and then ``--seconds``. Upserts reuse ids from a
fixed pool per client (inserts first, then replacements), so the stored data stops growing
after the warm-up and the server's memory should too.

Prints one table row per RPC and path: calls, errors, calls/s, p50 / p99 / max latency (ms),
and the server's resident memory (VmRSS from /proc/PID/status) at the start (SERVING, before
any call), after the warm-up and at the end, plus its peak (VmHWM). Exits 1 if any call
failed, the server logged a traceback or did not stop cleanly on SIGTERM.

    nice python bench/load.py                       # 32 clients, 15 s warm-up, 180 s
    nice python bench/load.py --seconds 120
    python bench/load.py --clients 4 --seconds 5 --warmup 2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from veclink.client import Client

MAX_CLIENTS = 64
MAX_SECONDS = 3600.0
#: the RPC mix: (name, weight); a client picks one per call
MIX: tuple[tuple[str, int], ...] = (
    ("Embed", 20),
    ("Upsert text", 10),
    ("Upsert vector", 25),
    ("Search text", 15),
    ("Search vector", 30),
)
TEXT_COLLECTION = "load_text"
VECTOR_COLLECTION = "load_vectors"
WORDS = (
    "dog cat river bank loan house tree bird music film city road train cloud paper stone "
    "light water green quick old small north market school garden winter doctor engine "
    "bridge island"
).split()


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoadConfig:
    #: concurrent clients (threads, each with its own channel)
    clients: int = 32
    #: measured seconds (after the warm-up)
    seconds: float = 180.0
    #: seconds of the same mix before measuring (model load, caches, first index splits)
    warmup: float = 15.0
    #: dimensions of the vector-only collection
    dim: int = 64
    #: records per vector Upsert (text Upserts send 2)
    batch: int = 8
    #: distinct ids per client and collection: upserts beyond it replace
    ids_per_client: int = 256
    #: index kind of both collections
    index_kind: str = "partitioned"
    seed: int = 0

    def check(self) -> None:
        if not 1 <= self.clients <= MAX_CLIENTS:
            raise ValueError(f"clients must be 1..{MAX_CLIENTS}, got {self.clients}")
        if not 0 < self.seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be in (0, {MAX_SECONDS:.0f}], got {self.seconds}")
        if not 0 <= self.warmup <= MAX_SECONDS:
            raise ValueError(f"warmup must be in [0, {MAX_SECONDS:.0f}], got {self.warmup}")
        if self.index_kind not in ("flat", "partitioned"):
            raise ValueError(f"index_kind must be flat or partitioned, got {self.index_kind}")


@dataclasses.dataclass
class RpcStats:
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    errors: int = 0
    first_errors: list[str] = dataclasses.field(default_factory=list)

    def add(self, other: RpcStats) -> None:
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors
        self.first_errors += other.first_errors[: max(0, 3 - len(self.first_errors))]


@dataclasses.dataclass
class LoadReport:
    config: LoadConfig
    stats: dict[str, RpcStats]
    measured_seconds: float
    rss_kib: dict[str, int]  # start, warm, end, peak
    records: dict[str, int]  # collection -> count at the end
    tracebacks: int
    #: the server's output (its log), for a failed run
    server_lines: list[str]
    server_exit: int | None
    loadavg: tuple[tuple[float, ...], tuple[float, ...]]

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.stats.values())

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.tracebacks == 0 and self.server_exit == 0


# ---------------------------------------------------------------------------- the server


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB, from /proc/PID/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


class ServerProcess:
    """`veclink serve` on a free loopback port; ``lines`` holds what it printed."""

    def __init__(self, data_dir: Path, index_kind: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        self.address = f"127.0.0.1:{port}"
        cmd = [
            str(Path(sys.executable).with_name("veclink")),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--metrics-port",
            "0",
            "--data-dir",
            str(data_dir),
            "--index-kind",
            index_kind,
        ]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                if "veclink listening on" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, name="server-output", daemon=True).start()
        if not ready.wait(300) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.lines[-30:]))

    @property
    def tracebacks(self) -> int:
        return sum("Traceback (most recent call last)" in line for line in self.lines)

    def stop(self) -> int | None:
        """SIGTERM (drain, checkpoint, close); the exit code, None if it had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


# ---------------------------------------------------------------------------- the clients


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))


def _vector(rng: np.random.Generator, dim: int) -> list[float]:
    return rng.standard_normal(dim).astype(np.float32).tolist()


def _operations(
    client: Client, index: int, config: LoadConfig
) -> dict[str, Callable[[random.Random, np.random.Generator], object]]:
    counter = {"text": 0, "vector": 0}

    def next_ids(kind: str, n: int) -> list[str]:
        start = counter[kind]
        counter[kind] += n
        return [f"c{index}-{(start + i) % config.ids_per_client}" for i in range(n)]

    def embed(rng: random.Random, _: np.random.Generator) -> object:
        return client.embed([_sentence(rng) for _ in range(rng.randint(1, 2))])

    def upsert_text(rng: random.Random, _: np.random.Generator) -> object:
        records = [
            {"id": rid, "text": _sentence(rng), "payload": {"client": index}}
            for rid in next_ids("text", 2)
        ]
        return client.upsert(TEXT_COLLECTION, records)

    def upsert_vector(_: random.Random, nrng: np.random.Generator) -> object:
        records = [
            {"id": rid, "vector": _vector(nrng, config.dim), "payload": {"client": index}}
            for rid in next_ids("vector", config.batch)
        ]
        return client.upsert(VECTOR_COLLECTION, records)

    def search_text(rng: random.Random, _: np.random.Generator) -> object:
        return client.search(TEXT_COLLECTION, text=_sentence(rng), k=10)

    def search_vector(_: random.Random, nrng: np.random.Generator) -> object:
        return client.search(VECTOR_COLLECTION, vector=_vector(nrng, config.dim), k=10)

    return {
        "Embed": embed,
        "Upsert text": upsert_text,
        "Upsert vector": upsert_vector,
        "Search text": search_text,
        "Search vector": search_vector,
    }


def _client_loop(
    address: str,
    index: int,
    config: LoadConfig,
    measuring: threading.Event,
    stop: threading.Event,
    out: dict[str, RpcStats],
) -> None:
    rng = random.Random(config.seed * 1000 + index)
    nrng = np.random.default_rng(config.seed * 1000 + index)
    names = [name for name, _ in MIX]
    weights = [w for _, w in MIX]
    with Client(address, timeout=120) as client:
        ops = _operations(client, index, config)
        while not stop.is_set():
            name = rng.choices(names, weights)[0]
            counted = measuring.is_set()  # a call that starts in the warm-up is not measured
            began = time.perf_counter()
            try:
                ops[name](rng, nrng)
            except Exception as exc:  # any failure is what this benchmark counts
                stats = out[name]
                stats.errors += 1  # warm-up errors count too: the run must have none
                if len(stats.first_errors) < 3:
                    stats.first_errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            if counted:
                out[name].latencies_ms.append((time.perf_counter() - began) * 1000)


def _setup(address: str, config: LoadConfig) -> None:
    with Client(address, timeout=300) as c:
        default = next(m.name for m in c.list_models() if m.is_default)
        c.create_collection(TEXT_COLLECTION, model=default, index_kind=config.index_kind)
        c.create_collection(
            VECTOR_COLLECTION, dimensions=config.dim, metric="cosine", index_kind=config.index_kind
        )


def run_load(config: LoadConfig, log: Callable[[str], None] = lambda m: None) -> LoadReport:
    """Start a server in a temporary directory, load it, stop it; the measurements."""
    config.check()
    loadavg_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="veclink-load-") as tmp:
        server = ServerProcess(Path(tmp) / "data", config.index_kind)
        try:
            rss = {"start": rss_kib(server.proc.pid)["VmRSS"]}
            log(f"server {server.address} pid {server.proc.pid}: {rss['start']} KiB")
            _setup(server.address, config)
            measuring, stop = threading.Event(), threading.Event()
            per_client = [{name: RpcStats() for name, _ in MIX} for _ in range(config.clients)]
            threads = [
                threading.Thread(
                    target=_client_loop,
                    args=(server.address, i, config, measuring, stop, per_client[i]),
                    name=f"load-client-{i}",
                    daemon=True,
                )
                for i in range(config.clients)
            ]
            for t in threads:
                t.start()
            time.sleep(config.warmup)
            rss["warm"] = rss_kib(server.proc.pid)["VmRSS"]
            log(f"warm-up done: {rss['warm']} KiB; measuring {config.seconds:.0f} s")
            measuring.set()
            began = time.monotonic()
            deadline = began + config.seconds
            while time.monotonic() < deadline and server.proc.poll() is None:
                time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            stop.set()
            for t in threads:
                t.join(timeout=180)
            measured = time.monotonic() - began
            status = rss_kib(server.proc.pid)
            rss["end"], rss["peak"] = status["VmRSS"], status["VmHWM"]
            with Client(server.address, timeout=60) as c:
                records = {
                    name: c.get_collection(name).count
                    for name in (TEXT_COLLECTION, VECTOR_COLLECTION)
                }
        finally:
            exit_code = server.stop()
    stats = {name: RpcStats() for name, _ in MIX}
    for client_stats in per_client:
        for name, s in client_stats.items():
            stats[name].add(s)
    return LoadReport(
        config=config,
        stats=stats,
        measured_seconds=measured,
        rss_kib=rss,
        records=records,
        tracebacks=server.tracebacks,
        server_lines=server.lines,
        server_exit=exit_code,
        loadavg=(loadavg_start, os.getloadavg()),
    )


# ---------------------------------------------------------------------------- the table


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def format_report(report: LoadReport, command: str) -> str:
    c = report.config
    mib = {k: v / 1024 for k, v in report.rss_kib.items()}
    lines = [
        f"`{command}`",
        "",
        f"{c.clients} clients, {c.warmup:.0f} s warm-up + {report.measured_seconds:.0f} s "
        f"measured, {c.index_kind} indexes; load average "
        f"{report.loadavg[0][0]:.1f} at the start, {report.loadavg[1][0]:.1f} at the end",
        "",
        "| RPC | calls | errors | calls/s | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    total = RpcStats()
    for name, s in report.stats.items():
        total.add(s)
        lines.append(_row(name, s, report.measured_seconds))
    lines.append(_row("**all**", total, report.measured_seconds))
    lines += [
        "",
        "| server RSS (MiB) | start (SERVING) | after warm-up | end | peak |",
        "|---|---:|---:|---:|---:|",
        f"| `veclink serve` | {mib['start']:.0f} | {mib['warm']:.0f} | {mib['end']:.0f} "
        f"| {mib['peak']:.0f} |",
        "",
        f"records at the end: {report.records}; server tracebacks: {report.tracebacks}; "
        f"exit code after SIGTERM: {report.server_exit}",
    ]
    for name, s in report.stats.items():
        for message in s.first_errors:
            lines.append(f"- {name} error: {message}")
    return "\n".join(lines)


def _row(name: str, s: RpcStats, seconds: float) -> str:
    lat = s.latencies_ms
    return (
        f"| {name} | {len(lat):,} | {s.errors} | {len(lat) / seconds:.1f} "
        f"| {_percentile(lat, 50):.1f} | {_percentile(lat, 99):.1f} "
        f"| {max(lat) if lat else float('nan'):.1f} |"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=32, help=f"1..{MAX_CLIENTS} (default 32)")
    ap.add_argument("--seconds", type=float, default=180.0, help="measured seconds (180)")
    ap.add_argument("--warmup", type=float, default=15.0, help="warm-up seconds (15)")
    ap.add_argument("--dim", type=int, default=64, help="vector collection dimensions (64)")
    ap.add_argument("--index-kind", choices=("flat", "partitioned"), default="partitioned")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--server-log", type=Path, help="write the server's output (log) here")
    args = ap.parse_args(argv)
    config = LoadConfig(
        clients=args.clients,
        seconds=args.seconds,
        warmup=args.warmup,
        dim=args.dim,
        index_kind=args.index_kind,
        seed=args.seed,
    )
    try:
        config.check()
    except ValueError as exc:
        ap.error(str(exc))
    report = run_load(config, log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.server_log:
        args.server_log.write_text("".join(report.server_lines))
    if report.tracebacks:
        lines = report.server_lines
        first = next(i for i, line in enumerate(lines) if "Traceback (most recent" in line)
        print(
            "first server traceback:\n" + "".join(lines[max(0, first - 2) : first + 40]),
            file=sys.stderr,
        )
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    print(format_report(report, f"python bench/load.py {argv_text}".strip()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
