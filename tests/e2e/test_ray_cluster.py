"""Cluster mode on a real local multi-node Ray (head + one worker node; no mocks of Ray).

- sharded collections whose shards are Ray actors answer exactly like one index;
- killing a shard actor's process in the middle of a stream of writes loses no
  acknowledged write and leaves no trace of a refused one (a ledger, as in test_crash.py);
- a server in cluster mode, end to end over gRPC.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
from veclink.cluster.runtime import ClusterOptions, RayCluster
from veclink.service.models import ModelRegistry
from veclink.service.store import VectorStore

from tests.fixtures.server import RunningServer, server_settings
from tests.fixtures.sharding import DIM, observe
from veclink.client import Client
from veclink.errors import ClusterUnavailable
from veclink.wire.types import RecordIn, SearchQuery

MODELS = {"all-MiniLM-L6-v2": {"kind": "hf-text"}}


def cluster_store(data_dir: Path, ray_cluster: Any) -> VectorStore:
    cluster = RayCluster(ClusterOptions(ray_address=ray_cluster.address))
    return VectorStore(data_dir, ModelRegistry(MODELS, "all-MiniLM-L6-v2"), cluster=cluster)


def shard_pids(store: VectorStore, name: str) -> list[int]:
    handles = store._open[name].index.group.handles
    return [ray.get(h.where.remote())["pid"] for h in handles]


def test_actor_shards_answer_like_one_index(ray_cluster: Any, tmp_path: Path) -> None:
    store = cluster_store(tmp_path, ray_cluster)
    try:
        store.create_collection("one", dim=DIM, metric="cosine", index_kind="flat")
        store.create_collection("many", dim=DIM, metric="cosine", index_kind="flat", shards=3)
        assert observe(store, "many") == observe(store, "one")
        group = store._open["many"].index.group
        # round-robin over the two nodes, one actor process per shard
        assert len(set(group.nodes)) == 2
        assert len(set(shard_pids(store, "many"))) == 3
        assert os.getpid() not in shard_pids(store, "many")
    finally:
        store.close()


class Ledger:
    """What the writer was told: the acknowledged state, and how many writes were refused."""

    def __init__(self) -> None:
        self.state: dict[str, np.ndarray] = {}
        self.acknowledged = 0
        self.refused = 0
        self.lock = threading.Lock()


def _write_stream(store: VectorStore, ledger: Ledger, stop: threading.Event) -> None:
    """Upserts of new ids, replacements and deletes, until ``stop``; the ledger keeps score."""
    rng = np.random.default_rng(7)
    next_id = 0
    while not stop.is_set():
        op = rng.integers(0, 4)
        with ledger.lock:
            live = sorted(ledger.state)
        try:
            if op == 3 and live:
                gone = list(rng.choice(live, size=min(5, len(live)), replace=False))
                store.delete("c", gone)
                with ledger.lock:
                    for rid in gone:
                        ledger.state.pop(rid, None)
            else:
                ids = [f"w{next_id + j}" for j in range(20)]
                next_id += 20
                if op == 2 and live:  # replace some existing records
                    ids[:5] = list(rng.choice(live, size=min(5, len(live)), replace=False))
                vectors = rng.normal(size=(len(ids), DIM)).astype(np.float32)
                records = [
                    RecordIn(id=i, vector=v.tolist()) for i, v in zip(ids, vectors, strict=True)
                ]
                store.upsert("c", records)
                with ledger.lock:
                    ledger.state.update(zip(ids, vectors, strict=True))
            ledger.acknowledged += 1
        except ClusterUnavailable:
            ledger.refused += 1  # the client would retry; the write must leave no trace


def _check_against_ledger(store: VectorStore, ledger: Ledger) -> None:
    ids = sorted(ledger.state)
    records, missing = store.get("c", ids, with_vectors=True)
    assert missing == []
    for record in records:
        np.testing.assert_array_equal(record.vector, ledger.state[record.id])
    info = store.get_collection("c")
    assert info.count == len(ids) == info.index_stats["size"]
    # nothing else: every vector in the shards belongs to an acknowledged record
    for rid in ids[:: max(1, len(ids) // 25)]:
        hits = store.search(SearchQuery(collection="c", vector=ledger.state[rid].tolist(), k=1))
        assert [h.id for h in hits] == [rid]


def test_killing_a_shard_mid_stream_loses_no_acknowledged_write(
    ray_cluster: Any, tmp_path: Path
) -> None:
    store = cluster_store(tmp_path, ray_cluster)
    store.create_collection("c", dim=DIM, metric="l2", index_kind="flat", shards=3)
    ledger, stop = Ledger(), threading.Event()
    writer = threading.Thread(target=_write_stream, args=(store, ledger, stop), daemon=True)
    before = shard_pids(store, "c")
    writer.start()
    try:
        deadline = time.monotonic() + 60
        while ledger.acknowledged < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(before[1], signal.SIGKILL)  # shard 1's process, in the middle of the stream
        killed_at = ledger.acknowledged + ledger.refused
        while ledger.acknowledged + ledger.refused < killed_at + 30 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not writer.is_alive()
    after = shard_pids(store, "c")
    assert after[1] != before[1] and after[0] == before[0]  # Ray restarted shard 1 only
    assert ledger.acknowledged >= 20
    _check_against_ledger(store, ledger)
    # and from the disks alone: a new store starts new actors, which replay their WALs
    store.close()
    again = cluster_store(tmp_path, ray_cluster)
    try:
        _check_against_ledger(again, ledger)
    finally:
        again.close()


def test_server_in_cluster_mode_over_grpc(ray_cluster: Any, tmp_path: Path) -> None:
    settings = server_settings(tmp_path, cluster={"ray_address": ray_cluster.address})
    running = RunningServer(settings)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(120, DIM)).astype(np.float32)
    records = [
        {"id": f"r{i}", "vector": vectors[i].tolist(), "payload": {"even": i % 2 == 0}}
        for i in range(120)
    ]
    try:
        with Client(running.address) as client:
            sharded = client.create_collection("s", dimensions=DIM, index_kind="flat", shards=2)
            client.create_collection("u", dimensions=DIM, index_kind="flat")
            assert sharded.shards == 2
            for name in ("s", "u"):
                assert client.upsert(name, records) == 120
                assert client.delete(name, ["r0", "r1", "nope"]) == 2
            for q in vectors[:5]:
                for flt in (None, {"even": True}):
                    got = client.search("s", vector=q, k=7, filter=flt)
                    want = client.search("u", vector=q, k=7, filter=flt)
                    assert [(h.id, round(h.score, 5)) for h in got] == [
                        (h.id, round(h.score, 5)) for h in want
                    ]
            found, missing = client.get("s", ["r0", "r5", "r77"], with_vectors=True)
            assert missing == ["r0"] and [r.id for r in found] == ["r5", "r77"]
            np.testing.assert_allclose(
                found[1].vector, vectors[77] / np.linalg.norm(vectors[77]), rtol=1e-5
            )
            info = client.get_collection("s")
            assert info.count == 118 and info.index_stats["shards"] == 2
            assert sum(info.index_stats["shard_sizes"]) == 118
            assert running.server.store.cluster is not None
    finally:
        running.stop()
