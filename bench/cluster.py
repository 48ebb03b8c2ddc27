"""Cluster mode on Ray, measured on one machine: shards, fan-out, restart, encoder replicas.

Every figure compares with the single-process path measured in the same run:

- ``shards``: ingest (upserts/s) and search (queries/s, one query per call and batched)
  with 1, 2 and 4 shard actors, against one in-process index on the same data;
- fan-out overhead: the per-search latency of a sharded index minus that of one
  in-process index (same data, same k), for in-process shards and for Ray actors;
- ``restart``: one shard actor killed with SIGKILL, Ray restarts it and it replays its
  WAL: seconds from the kill until it answers again, with everything in the WAL and
  after a snapshot;
- ``encoders``: sentences/s of all-MiniLM-L6-v2 through 1 and 2 encoder replicas (one
  CPU each, fed by concurrent clients through the batching front-end), against the
  encoder in this process.

A local Ray (``ray.init(num_cpus=...)``) runs the actors; on a real cluster the shards and
replicas would sit on other machines, so network time adds to the fan-out (docs/scale.md).

    python bench/cluster.py [--parts shards restart encoders] [-n 20000] [--dim 384]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import ray  # noqa: E402
from veclink.cluster.ray_shards import RayShards  # noqa: E402
from veclink.cluster.sharded import LocalShards, ShardedIndex  # noqa: E402
from veclink.index import create_index  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def data(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered synthetic vectors (normalised), and queries near them."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(64, dim)).astype(np.float32)
    x = centers[rng.integers(0, 64, n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    q = x[rng.integers(0, n, queries)] + 0.1 * rng.normal(size=(queries, dim)).astype(np.float32)
    return x.astype(np.float32), q.astype(np.float32)


def fill(index: Any, x: np.ndarray, batch: int) -> float:
    """Upsert ``x`` in batches; returns vectors/s."""
    began = time.perf_counter()
    for start in range(0, len(x), batch):
        ids = np.arange(start, min(start + batch, len(x)), dtype=np.int64)
        index.add(ids, x[ids], stamp=start // batch + 1)
    return len(x) / (time.perf_counter() - began)


def search_rates(index: Any, q: np.ndarray, k: int) -> tuple[float, float, np.ndarray]:
    """(ms per one-query search, queries/s in batches of 64, ids of the one-query searches)."""
    index.search(q[:4], k)  # warm
    began = time.perf_counter()
    ids = np.stack([index.search(q[i : i + 1], k)[1][0] for i in range(len(q))])
    single_ms = 1000 * (time.perf_counter() - began) / len(q)
    began = time.perf_counter()
    for start in range(0, len(q), 64):
        index.search(q[start : start + 64], k)
    return single_ms, len(q) / (time.perf_counter() - began), ids


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got, truth, strict=True)]))


def bench_shards(args: argparse.Namespace, work: Path) -> None:
    x, q = data(args.n, args.dim, args.queries)
    exact = create_index("flat", args.dim, metric="cosine")
    exact.add(np.arange(len(x), dtype=np.int64), x)
    truth = exact.search(q, args.k)[1]
    create = {"kind": args.kind, "dim": args.dim, "metric": "cosine", "options": {}}
    rows = []

    def measure(label: str, index: Any) -> None:
        ingest = fill(index, x, args.batch)
        single_ms, batched_qps, ids = search_rates(index, q, args.k)
        rows.append((label, ingest, single_ms, 1000 / single_ms, batched_qps, recall(ids, truth)))
        index.close()

    measure("one index, in process", create_index(args.kind, args.dim, "cosine", str(work / "one")))
    for shards in args.shards:
        root = work / f"local-{shards}"
        root.mkdir()
        group = LocalShards.open(root, shards, create)
        measure(
            f"{shards} shards in process",
            ShardedIndex(group, kind=args.kind, dim=args.dim, metric="cosine"),
        )
    for shards in args.shards:
        root = work / f"ray-{shards}"
        root.mkdir()
        group = RayShards.start(root, shards, create)
        measure(
            f"{shards} shard actors (Ray)",
            ShardedIndex(group, kind=args.kind, dim=args.dim, metric="cosine"),
        )
    base = rows[0][2]
    print(
        f"\n## shards: {args.n} x {args.dim} {args.kind}, upsert batches of {args.batch}, "
        f"k={args.k}, {args.queries} queries\n"
    )
    print(
        "| index | upserts/s | ms per search (1 query) | fan-out overhead ms | "
        "searches/s (1 query) | queries/s (batches of 64) | recall@k |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, ingest, ms, qps1, qps, rec in rows:
        print(
            f"| {label} | {ingest:,.0f} | {ms:.2f} | {ms - base:+.2f} | {qps1:,.0f} | "
            f"{qps:,.0f} | {rec:.3f} |"
        )


def bench_restart(args: argparse.Namespace, work: Path) -> None:
    x, _ = data(args.n, args.dim, 1)
    create = {"kind": args.kind, "dim": args.dim, "metric": "cosine", "options": {}}
    print(f"\n## restart: one shard actor, {args.n} x {args.dim} {args.kind}, SIGKILL\n")
    print(
        "| shard state at the kill | WAL records | vectors | "
        f"seconds to answer again, median of {args.repeats} (min-max) |"
    )
    print("|---|---:|---:|---:|")
    for snapshot in (False, True):
        root = work / f"restart-{int(snapshot)}"
        root.mkdir()
        group = RayShards.start(root, 1, create)
        index = ShardedIndex(group, kind=args.kind, dim=args.dim, metric="cosine")
        fill(index, x, args.batch)
        if snapshot:
            index.flush()
        wal = index.wal_records
        times = []
        for _ in range(args.repeats):
            pid = ray.get(group.handles[0].where.remote())["pid"]
            began = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            while True:
                try:
                    # the first call to the new process opens the index: snapshot + WAL replay
                    status = group.call([(0, "status", ())])[0]
                    if ray.get(group.handles[0].where.remote())["pid"] != pid:
                        break
                except Exception:  # noqa: BLE001 - still restarting
                    time.sleep(0.01)
            times.append(time.perf_counter() - began)
        label = "snapshot, empty WAL" if snapshot else "everything in the WAL"
        print(
            f"| {label} | {wal:,} | {status['size']:,} | {np.median(times):.2f} "
            f"({min(times):.2f}-{max(times):.2f}) |"
        )
        index.close()


def bench_encoders(args: argparse.Namespace) -> None:
    import torch
    from veclink.cluster.encoder_pool import ReplicatedEncoder
    from veclink.encoders import HFTextSpec, load_encoder

    lines = (ROOT / "service/demo/wordnet_glosses.tsv").read_text(encoding="utf-8").splitlines()
    texts = [line.split("\t")[-1] for line in lines[: args.texts]]
    spec = HFTextSpec()
    rows = []

    def run(encode: Any) -> float:
        encode(texts[:32])  # warm
        chunks = [texts[i : i + args.request] for i in range(0, len(texts), args.request)]
        todo = list(range(len(chunks)))
        lock = threading.Lock()

        def client() -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    c = todo.pop()
                encode(chunks[c])

        began = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return len(texts) / (time.perf_counter() - began)

    for threads in (1, os.cpu_count() or 1):
        torch.set_num_threads(threads)
        local = load_encoder(spec)
        rows.append((f"in process, {threads} torch thread(s)", run(local.encode)))
    torch.set_num_threads(1)
    for replicas in args.replicas:
        pool = ReplicatedEncoder.start(spec, replicas, num_cpus=1)
        rows.append((f"{replicas} replica(s), 1 CPU each", run(pool.encode)))
        pool.close()
    print(
        f"\n## encoders: all-MiniLM-L6-v2, {len(texts)} WordNet glosses, requests of "
        f"{args.request} from {args.clients} client threads\n"
    )
    print("| encoder | sentences/s |")
    print("|---|---:|")
    for label, rate in rows:
        print(f"| {label} | {rate:,.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["shards", "restart", "encoders"])
    ap.add_argument("-n", type=int, default=20_000, help="vectors")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--kind", default="partitioned", choices=("flat", "partitioned"))
    ap.add_argument("--batch", type=int, default=1_000, help="vectors per upsert")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="the local Ray's CPUs")
    ap.add_argument("--texts", type=int, default=1_024)
    ap.add_argument("--request", type=int, default=16, help="texts per encode request")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3, help="kills per restart row")
    args = ap.parse_args()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    work = Path(tempfile.mkdtemp(prefix="veclink-cluster-bench-"))
    try:
        if "shards" in args.parts:
            bench_shards(args, work)
        if "restart" in args.parts:
            bench_restart(args, work)
        if "encoders" in args.parts:
            bench_encoders(args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        ray.shutdown()


if __name__ == "__main__":
    main()
