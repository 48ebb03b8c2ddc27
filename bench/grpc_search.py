"""Parallel readers over gRPC: single-vector searches from 1 and 8 concurrent clients.

Starts a real server (``veclink serve``, as `bench/load.py` does), fills a vectors-only
partitioned collection with ``--n`` WordNet MiniLM vectors (384-d, inner product; `--data`)
and waits for the rebalancing worker to go idle; then each phase runs ``clients`` client
processes (each its own channel and its own Python, so the clients' GIL is not the limit)
that send single-vector searches (k 10) of held-out vectors for ``--seconds``. Reported per
phase: QPS, p50 / p99 latency, and the server's CPU (cores busy, from /proc). Phases run in
the order given, then once more in reverse, and the table keeps the better of the two per
phase, so a load spike from other jobs does not decide the ratio. ``--write-rate`` adds a
writer process upserting batches while the searches run (rebalancing steps then compete
with the readers).

    python bench/grpc_search.py --data ../shared/data             # ~3 min
    python bench/grpc_search.py --n 20000 --seconds 5 --clients 1 8   # quick look
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import ServerProcess  # noqa: E402

from veclink.client import Client  # noqa: E402

COLLECTION = "wordnet"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def searcher(
    address: str, queries: np.ndarray, start: float, stop: float, opts: dict, out: mp.Queue
) -> None:
    client = Client(address)
    lat = []
    i = 0
    client.search(COLLECTION, vector=queries[0], k=10, **opts)  # connect before the start
    while time.time() < start:
        time.sleep(0.001)
    while time.time() < stop:
        t = time.perf_counter()
        client.search(COLLECTION, vector=queries[i % len(queries)], k=10, **opts)
        lat.append(time.perf_counter() - t)
        i += 1
    client.close()
    out.put(lat)


def writer(address: str, vectors: np.ndarray, stop: float, rate: float, out: mp.Queue) -> None:
    client = Client(address)
    rng = np.random.default_rng(1)
    done = 0
    while time.time() < stop:
        t = time.perf_counter()
        rows = rng.integers(0, len(vectors), 100)
        client.upsert(
            COLLECTION, [{"id": f"w{r}", "vector": vectors[r] * 0.999} for r in rows.tolist()]
        )
        done += 100
        time.sleep(max(0.0, 100 / rate - (time.perf_counter() - t)))
    client.close()
    out.put(done)


def phase(
    server: ServerProcess, queries: np.ndarray, clients: int, args: argparse.Namespace, opts: dict
) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start = time.time() + 3.0  # spawned interpreters import veclink first
    stop = start + args.seconds
    procs = [
        ctx.Process(
            target=searcher, args=(server.address, queries[c::clients], start, stop, opts, out)
        )
        for c in range(clients)
    ]
    if args.write_rate:
        procs.append(
            ctx.Process(target=writer, args=(server.address, queries, stop, args.write_rate, out))
        )
    for p in procs:
        p.start()
    while time.time() < start:
        time.sleep(0.01)
    cpu0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
    while time.time() < stop:
        time.sleep(0.05)
    cpu1, t1 = cpu_seconds(server.proc.pid), time.perf_counter()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    lat = np.concatenate([np.asarray(r) for r in results if isinstance(r, list)])
    return {
        "qps": len(lat) / args.seconds,
        "p50": float(np.percentile(lat, 50) * 1e3),
        "p99": float(np.percentile(lat, 99) * 1e3),
        "cpu": (cpu1 - cpu0) / (t1 - t0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data")
    )
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--nprobe", type=int, default=0, help="0: the index's default")
    ap.add_argument(
        "--payload",
        choices=("yes", "no", "both"),
        default="both",
        help="searches ask for payloads (with_payload) or not",
    )
    ap.add_argument("--write-rate", type=float, default=0.0, help="upserts/s while searching")
    args = ap.parse_args()
    x = np.load(Path(args.data) / "wordnet" / "minilm_fp16.npy").astype(np.float32)
    x = x[np.random.default_rng(0).permutation(len(x))][: args.n + 2000]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    base, queries = x[: args.n], x[args.n :]
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", "partitioned")
        try:
            with Client(server.address, timeout=600) as c:
                c.create_collection(COLLECTION, dimensions=x.shape[1], metric="ip")
                t = time.perf_counter()
                c.upsert_stream(
                    COLLECTION,
                    (
                        [
                            {"id": f"w{i}", "vector": base[i]}
                            for i in range(s, min(s + 1000, len(base)))
                        ]
                        for s in range(0, len(base), 1000)
                    ),
                )
                while c.get_collection(COLLECTION).index_stats.get("pending", 0):
                    time.sleep(0.5)
                stats = c.get_collection(COLLECTION).index_stats
                print(
                    f"{args.n:,} vectors upserted in {time.perf_counter() - t:.0f}s, "
                    f"{stats['partitions']:,} partitions",
                    flush=True,
                )
            modes = {"yes": [True], "no": [False], "both": [True, False]}[args.payload]
            runs = [(m, c) for m in modes for c in args.clients]
            best: dict[tuple[bool, int], dict[str, float]] = {}
            for m, c in runs + runs[::-1]:
                opts = {"with_payload": m, "nprobe": args.nprobe}
                r = phase(server, queries, c, args, opts)
                print(
                    f"  payload={m} clients={c}: {r['qps']:,.0f} q/s, p50 {r['p50']:.2f} ms, "
                    f"p99 {r['p99']:.2f} ms, server CPU {r['cpu']:.2f} cores",
                    flush=True,
                )
                if (m, c) not in best or r["qps"] > best[(m, c)]["qps"]:
                    best[(m, c)] = r
        finally:
            code = server.stop()
    load1 = os.getloadavg()
    print(
        f"\nload average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end; server exit {code}"
    )
    print("| payload | clients | q/s | x one client | p50 ms | p99 ms | server CPU (cores) |")
    print("|---|---|---|---|---|---|---|")
    for (m, c), r in best.items():
        one = best.get((m, args.clients[0]), r)["qps"]
        print(
            f"| {'yes' if m else 'no'} | {c} | {r['qps']:,.0f} | {r['qps'] / one:.2f} | "
            f"{r['p50']:.2f} | {r['p99']:.2f} | {r['cpu']:.2f} |"
        )


if __name__ == "__main__":
    main()
