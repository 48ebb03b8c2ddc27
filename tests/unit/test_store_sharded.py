"""Sharded collections in embedded mode (shards in the server process; no Ray).

The cluster-mode twin, with shards as Ray actors, is tests/e2e/test_ray_cluster.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from veclink.cluster.routing import shard_of
from veclink.service.models import ModelRegistry
from veclink.service.store import VectorStore
from veclink.v1 import collections_pb2

from tests.fixtures.sharding import DIM, observe
from veclink.errors import InvalidArgument
from veclink.wire import convert
from veclink.wire.types import NewCollection, RecordIn


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    models = ModelRegistry({"all-MiniLM-L6-v2": {"kind": "hf-text"}}, "all-MiniLM-L6-v2")
    return VectorStore(tmp_path, models)


@pytest.mark.parametrize("shards", [1, 3])
def test_sharded_collection_answers_like_one_index(store: VectorStore, shards: int) -> None:
    store.create_collection("one", dim=DIM, metric="cosine", index_kind="flat")
    store.create_collection("many", dim=DIM, metric="cosine", index_kind="flat", shards=shards)
    assert observe(store, "many") == observe(store, "one")
    assert store.get_collection("many").shards == shards
    assert store.get_collection("one").shards == 0


def test_vectors_live_on_the_shard_their_id_hashes_to(store: VectorStore) -> None:
    store.create_collection("c", dim=DIM, index_kind="flat", shards=4)
    rng = np.random.default_rng(1)
    store.upsert(
        "c", [RecordIn(id=f"r{i}", vector=rng.normal(size=DIM).tolist()) for i in range(100)]
    )
    index = store._open["c"].index
    for s, shard in enumerate(index.group.shards):
        ids = shard.ids()
        assert ids.size and (shard_of(ids, 4) == s).all()
    assert store.get_collection("c").index_stats["shard_sizes"] == [
        len(shard.ids()) for shard in index.group.shards
    ]


def test_sharded_collection_survives_a_reopen(tmp_path: Path, store: VectorStore) -> None:
    store.create_collection("c", dim=DIM, index_kind="partitioned", shards=3)
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(60, DIM)).astype(np.float32)
    store.upsert("c", [RecordIn(id=f"r{i}", vector=vectors[i].tolist()) for i in range(60)])
    store.delete("c", ["r0", "r1"])
    store.close()
    models = ModelRegistry({"all-MiniLM-L6-v2": {"kind": "hf-text"}}, "all-MiniLM-L6-v2")
    again = VectorStore(tmp_path, models)
    info = again.get_collection("c")
    assert (info.count, info.shards, info.index_stats["size"]) == (58, 3, 58)
    records, missing = again.get("c", ["r0", "r5"], with_vectors=True)
    assert missing == ["r0"]
    np.testing.assert_allclose(
        records[0].vector, vectors[5] / np.linalg.norm(vectors[5]), rtol=1e-5
    )
    again.close()


def test_bad_shard_counts_are_refused(store: VectorStore) -> None:
    with pytest.raises(InvalidArgument, match="shards"):
        store.create_collection("c", dim=DIM, shards=-1)
    with pytest.raises(InvalidArgument, match="shards"):
        store.create_collection("c", dim=DIM, shards=store.limits.max_shards + 1)
    with pytest.raises(InvalidArgument, match="index options"):
        store.create_collection("c", dim=DIM, shards=2, index_options={"no_such": 1})
    assert store.list_collections() == []


def test_shards_cross_the_wire() -> None:
    req = convert.new_collection_to_proto(NewCollection(name="c", dim=4, shards=5))
    assert isinstance(req, collections_pb2.CreateCollectionRequest) and req.shards == 5
    assert convert.new_collection_from_proto(req).shards == 5


def test_embedded_mode_never_imports_ray(tmp_path: Path) -> None:
    """In a fresh interpreter: the server, the CLI and a sharded collection in embedded mode."""
    code = f"""
import sys
from veclink.cli.main import build_parser
from veclink.service.server import build_store
from veclink.service.settings import load_settings
from veclink.wire.types import RecordIn
build_parser().parse_args(["serve", "--ray", "local"])
storage = {{"data_dir": {str(tmp_path)!r}}}
store = build_store(load_settings(env={{}}, overrides={{"storage": storage}}))
store.create_collection("c", dim=4, shards=2)
store.upsert("c", [RecordIn(id="a", vector=[1.0, 0.0, 0.0, 0.0])])
store.close()
print("ray" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
