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
from veclink.cluster.sharded import LocalShards, ShardedIndex, shard_path  # noqa: E402
from veclink.index import create_index, open_index  # noqa: E402

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
        index.wait_idle(600)  # background splits and merges done before searching
        single_ms, batched_qps, ids = search_rates(index, q, args.k)
        rows.append((label, ingest, single_ms, 1000 / single_ms, batched_qps, recall(ids, truth)))
        index.close()

    warm = create_index(args.kind, args.dim, "cosine", str(work / "warm"))
    fill(warm, x[: 4 * args.batch], args.batch)  # imports, thread pools, first-call costs
    warm.close()
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
        "| shard state at the kill | WAL records | vectors | open in process, s | "
        f"kill to answering again, s (median of {args.repeats}, min-max) |"
    )
    print("|---|---:|---:|---:|---:|")
    for snapshot in (False, True):
        root = work / f"restart-{int(snapshot)}"
        root.mkdir()
        group = RayShards.start(root, 1, create)
        index = ShardedIndex(group, kind=args.kind, dim=args.dim, metric="cosine")
        fill(index, x, args.batch)
        index.wait_idle(600)
        if snapshot:
            index.flush()
        wal = index.wal_records
        # the same directory opened in this process: the index's own share of a restart
        began = time.perf_counter()
        open_index(str(shard_path(root, 0))).abandon()
        open_here = time.perf_counter() - began
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
            f"| {label} | {wal:,} | {status['size']:,} | {open_here:.2f} | "
            f"{np.median(times):.2f} ({min(times):.2f}-{max(times):.2f}) |"
        )
        index.close()


def bench_encoders(args: argparse.Namespace) -> None:
    import torch
    from veclink.cluster.encoder_pool import ReplicatedEncoder
    from veclink.encoders import HFTextSpec, load_encoder

    lines = (ROOT / "service/demo/wordnet_glosses.tsv").read_text(encoding="utf-8").splitlines()
    texts = [line.split("\t")[-1] for line in lines[: args.texts]]
    spec = HFTextSpec()

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

    # every configuration once per round, rounds interleaved, so that a neighbour's load on
    # this shared machine falls on all of them alike; the table gives medians
    torch.set_num_threads(1)
    local = load_encoder(spec)
    pools = {n: ReplicatedEncoder.start(spec, n, num_cpus=1) for n in args.replicas}
    configs: dict[str, Any] = {"in process, 1 torch thread": local.encode}
    configs.update({f"{n} replica(s), 1 CPU each": pools[n].encode for n in args.replicas})
    rates: dict[str, list[float]] = {label: [] for label in configs}
    for _ in range(args.rounds):
        for label, encode in configs.items():
            rates[label].append(run(encode))
    for pool in pools.values():
        pool.close()
    rows = [
        (label, float(np.median(r)), " / ".join(f"{x:.0f}" for x in r))
        for label, r in rates.items()
    ]
    print(
        f"\n## encoders: all-MiniLM-L6-v2, {len(texts)} WordNet glosses, requests of "
        f"{args.request} from {args.clients} client threads\n"
    )
    print(f"| encoder | sentences/s (median of {args.rounds} rounds) | each round |")
    print("|---|---:|---|")
    for label, rate, each in rows:
        print(f"| {label} | {rate:,.0f} | {each} |")


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
    ap.add_argument(
        "--cpus", type=int, default=4, help="the local Ray's logical CPUs (the pools need 1+2)"
    )
    ap.add_argument("--texts", type=int, default=1_024)
    ap.add_argument("--request", type=int, default=16, help="texts per encode request")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3, help="kills per restart row")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved encoder rounds")
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
