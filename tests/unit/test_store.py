"""VectorStore on SQLite and on PostgreSQL: catalog + index + model, and crash reconciliation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from veclink.service.models import ModelRegistry
from veclink.service.store import Limits, VectorStore

from veclink.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted
from veclink.wire.types import Condition, Filter, RecordIn, SearchQuery

DIM = 8


@pytest.fixture(scope="module")
def models() -> ModelRegistry:
    return ModelRegistry({"all-MiniLM-L6-v2": {"kind": "hf-text"}}, "all-MiniLM-L6-v2")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_url")


def make_store(tmp_path: Path, models: ModelRegistry, db_url: str | None, **kw) -> VectorStore:
    return VectorStore(
        tmp_path / "data", models, database_url=db_url, limits=Limits(max_batch=50), **kw
    )


def vec_records(n: int, start: int = 0, seed: int = 0) -> list[RecordIn]:
    rng = np.random.default_rng(seed)
    return [
        RecordIn(
            id=f"r{i}",
            vector=rng.normal(size=DIM).astype(np.float32),
            payload={"i": i, "even": i % 2 == 0},
        )
        for i in range(start, start + n)
    ]


def test_collection_lifecycle(tmp_path: Path, models: ModelRegistry, db_url: str | None) -> None:
    store = make_store(tmp_path, models, db_url)
    info = store.create_collection("vecs", dim=DIM, metric="ip")
    assert (info.name, info.dim, info.metric, info.count) == ("vecs", DIM, "ip", 0)
    with pytest.raises(AlreadyExists):
        store.create_collection("vecs", dim=DIM)
    with pytest.raises(InvalidArgument, match="dimensions"):
        store.create_collection("novec")
    with pytest.raises(InvalidArgument, match="name"):
        store.create_collection("bad name!", dim=DIM)
    with pytest.raises(NotFound):
        store.get_collection("nope")
    assert [c.name for c in store.list_collections()] == ["vecs"]
    store.delete_collection("vecs")
    with pytest.raises(NotFound):
        store.delete_collection("vecs")
    assert store.list_collections() == []
    store.close()


def test_upsert_search_get_delete(
    tmp_path: Path, models: ModelRegistry, db_url: str | None
) -> None:
    store = make_store(tmp_path, models, db_url)
    store.create_collection("vecs", dim=DIM, metric="ip")
    recs = vec_records(20)
    assert store.upsert("vecs", recs) == (20, 20)
    target = recs[7].vector
    hits = store.search(SearchQuery(collection="vecs", vector=target, k=3))
    scores = [float(r.vector @ target) for r in recs]
    assert hits[0].id == "r7" and hits[0].score == pytest.approx(max(scores), rel=1e-5)
    assert hits[0].payload == {"i": 7, "even": False}
    # replace r7 with a different vector: upsert, not a duplicate
    moved = RecordIn(id="r7", vector=-target, payload={"i": 7, "moved": True})
    assert store.upsert("vecs", [moved]) == (1, 0)
    assert store.get_collection("vecs").count == 20
    assert store.search(SearchQuery(collection="vecs", vector=target, k=1))[0].id != "r7"
    got, missing = store.get("vecs", ["r7", "zz"], with_vectors=True)
    assert missing == ["zz"] and got[0].payload["moved"] is True
    np.testing.assert_allclose(got[0].vector, -target, rtol=1e-6)
    # filters
    flt = Filter(must=(Condition(key="even", op="equals", value=True),))
    hits = store.search(SearchQuery(collection="vecs", vector=target, k=5, filter=flt))
    assert len(hits) == 5 and all(h.payload["even"] for h in hits)
    rng = Filter(must=(Condition(key="i", op="range", gte=3, lt=6),))
    hits = store.search(SearchQuery(collection="vecs", vector=target, k=10, filter=rng))
    assert sorted(h.id for h in hits) == ["r3", "r4", "r5"]
    assert store.delete("vecs", ["r1", "r2", "nope"]) == 2
    ids = {h.id for h in store.search(SearchQuery(collection="vecs", vector=target, k=100))}
    assert "r1" not in ids and "r2" not in ids and len(ids) == 18
    store.close()
    # reopen: everything is still there
    store = make_store(tmp_path, models, db_url)
    assert store.get_collection("vecs").count == 18
    assert store.search(SearchQuery(collection="vecs", vector=-target, k=1))[0].id == "r7"
    store.close()


def test_rejected_batch_changes_nothing(
    tmp_path: Path, models: ModelRegistry, db_url: str | None
) -> None:
    store = make_store(tmp_path, models, db_url)
    store.create_collection("vecs", dim=DIM)
    store.upsert("vecs", vec_records(5))
    bad_dim = [*vec_records(3, start=10), RecordIn(id="x", vector=np.ones(DIM + 1, np.float32))]
    with pytest.raises(InvalidArgument) as info:
        store.upsert("vecs", bad_dim)
    assert info.value.field == "records[3].vector"
    dup = [*vec_records(2, start=20), *vec_records(1, start=20)]
    with pytest.raises(InvalidArgument, match="twice"):
        store.upsert("vecs", dup)
    with pytest.raises(InvalidArgument, match="NaN"):
        store.upsert("vecs", [RecordIn(id="n", vector=np.full(DIM, np.nan, np.float32))])
    with pytest.raises(ResourceExhausted):
        store.upsert("vecs", vec_records(51, start=100))
    with pytest.raises(InvalidArgument, match="no model"):
        store.upsert("vecs", [RecordIn(id="t", text="hello")])
    assert store.get_collection("vecs").count == 5
    assert len(store._collection("vecs").index) == 5
    with pytest.raises(NotFound):
        store.upsert("nope", vec_records(1))
    store.close()


def test_text_collection_with_default_model(tmp_path: Path, models: ModelRegistry) -> None:
    store = make_store(tmp_path, models, None)
    info = store.create_collection("docs", model="all-MiniLM-L6-v2")
    assert info.dim == 384
    store.upsert(
        "docs",
        [
            RecordIn(id="dog", text="dog: a domesticated canine that barks"),
            RecordIn(id="car", text="car: a motor vehicle with four wheels"),
            RecordIn(id="bank", text="bank: a financial institution that accepts deposits"),
        ],
    )
    hits = store.search(SearchQuery(collection="docs", text="a pet animal that barks", k=3))
    assert hits[0].id == "dog"
    with pytest.raises(InvalidArgument) as info:
        store.upsert("docs", [RecordIn(id="a", text="fine"), RecordIn(id="b", text="   ")])
    assert info.value.field == "records[1].text"
    with pytest.raises(InvalidArgument, match="only accepts text"):
        store.upsert("docs", [RecordIn(id="img", image=b"\x89PNG")])
    with pytest.raises(InvalidArgument, match="empty"):
        store.search(SearchQuery(collection="docs", text=" ", k=3))
    with pytest.raises(InvalidArgument, match="k must be"):
        store.search(SearchQuery(collection="docs", text="x", k=0))
    assert store.get_collection("docs").count == 3
    store.close()


def test_reconcile_after_crash_between_index_and_catalog(
    tmp_path: Path, models: ModelRegistry
) -> None:
    store = make_store(tmp_path, models, None)
    store.create_collection("vecs", dim=DIM)
    store.upsert("vecs", vec_records(4))
    coll = store._collection("vecs")
    # an index write whose catalog commit never happened (crash in between)
    coll.index.add(np.array([999], dtype=np.int64), np.ones((1, DIM), np.float32))
    store.close()
    store = make_store(tmp_path, models, None)
    assert len(store._collection("vecs").index) == 4
    assert store.get_collection("vecs").count == 4
    store.close()


def test_orphan_index_dirs_removed(tmp_path: Path, models: ModelRegistry) -> None:
    store = make_store(tmp_path, models, None)
    store.close()
    orphan = tmp_path / "data" / "indexes" / "deadbeef"
    orphan.mkdir()
    make_store(tmp_path, models, None).close()
    assert not orphan.exists()


@pytest.mark.parametrize("kind", ["flat", "partitioned"])
def test_both_index_kinds_serve_a_collection(
    tmp_path: Path, models: ModelRegistry, kind: str
) -> None:
    store = make_store(tmp_path, models, None)
    store.create_collection(
        "c",
        dim=DIM,
        metric="cosine",
        index_kind=kind,
        index_options={"split_limit": 32, "merge_limit": 4} if kind == "partitioned" else {},
    )
    for start in range(0, 1000, 40):
        store.upsert("c", vec_records(40, start=start, seed=start))
    assert store.get_collection("c").count == 1000
    info = store.get_collection("c")
    assert info.index_stats["kind"] == kind
    target = vec_records(1, start=520, seed=520)[0].vector
    assert store.search(SearchQuery(collection="c", vector=target, k=1, nprobe=64))[0].id == "r520"
    with pytest.raises(InvalidArgument, match="options"):
        store.create_collection("bad", dim=DIM, index_kind=kind, index_options={"colour": 1})
    assert [c.name for c in store.list_collections()] == ["c"]
    store.close()


def test_close_checkpoints_every_collection_even_if_one_fails(
    tmp_path: Path, models: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path, models, None)
    for name in ("a", "b", "c"):
        store.create_collection(name, dim=DIM, metric="ip")
        store.upsert(name, vec_records(5))
        store.upsert(name, vec_records(5, start=5))
    assert store.wal_records() == 6  # two writes per collection since its empty snapshot

    def disk_full() -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store._collection("b").index, "flush", disk_full)
    assert store.close() == 2  # a and c checkpointed; b logged and left to its WAL
    store = make_store(tmp_path, models, None)
    assert store.open_all() == 3
    assert store.wal_records() == 2  # only b replays its two writes
    assert [store.get_collection(n).count for n in ("a", "b", "c")] == [10, 10, 10]
    assert store.close() == 3
    store = make_store(tmp_path, models, None)
    store.open_all()
    assert store.wal_records() == 0
    store.close()


@pytest.mark.parametrize("kind", ["flat", "partitioned"])
def test_collection_usage_follows_every_write(
    tmp_path: Path, models: ModelRegistry, db_url: str | None, kind: str
) -> None:
    store = make_store(tmp_path, models, db_url, default_index_kind=kind)
    searched: list[tuple[str, float]] = []
    store.on_search = lambda index_kind, seconds: searched.append((index_kind, seconds))
    store.create_collection("a", dim=DIM, metric="ip")
    store.create_collection("b", dim=DIM, metric="ip")
    store.upsert("a", vec_records(10))
    store.upsert("a", vec_records(4, start=8, seed=1))  # 2 replaced, 2 new
    assert store.delete("a", ["r0", "r1", "missing"]) == 2
    with pytest.raises(InvalidArgument):  # rejected whole: counts nothing
        store.upsert("a", [*vec_records(2, start=50), RecordIn(id="x", vector=np.ones(3))])
    store.search(SearchQuery(collection="a", vector=np.ones(DIM, np.float32), k=2))
    usage = {u.name: u for u in store.collection_usage()}
    assert list(usage) == ["a", "b"]
    a = usage["a"]
    assert (a.index_kind, a.records, a.vectors) == (kind, 10, 10)
    assert a.records == store.get_collection("a").count  # the catalog's own COUNT
    assert a.wal_records == 3 and a.wal_bytes > 12 * DIM * 4
    assert (usage["b"].records, usage["b"].vectors, usage["b"].wal_bytes) == (0, 0, 0)
    assert [k for k, _ in searched] == [kind] and 0 <= searched[0][1] < 60
    store.close()
    again = make_store(tmp_path, models, db_url)
    again.open_all()  # counted on open; the checkpoint at close emptied the WAL
    a = again.collection_usage()[0]
    assert (a.records, a.vectors, a.wal_bytes, a.wal_records) == (10, 10, 0, 0)
    again.delete_collection("a")
    assert [u.name for u in again.collection_usage()] == ["b"]
    again.close()


def test_search_without_payload_still_filters_and_returns_text(
    tmp_path: Path, models: ModelRegistry, db_url: str | None
) -> None:
    store = make_store(tmp_path, models, db_url)
    store.create_collection("vecs", dim=DIM, metric="ip")
    recs = [
        RecordIn(id=r.id, vector=r.vector, payload=r.payload, text=f"text {r.id}")
        for r in vec_records(30)
    ]
    store.upsert("vecs", recs)
    target = recs[4].vector
    full = store.search(SearchQuery(collection="vecs", vector=target, k=5))
    bare = store.search(SearchQuery(collection="vecs", vector=target, k=5, with_payload=False))
    assert [h.id for h in bare] == [h.id for h in full]
    assert [h.text for h in bare] == [f"text {h.id}" for h in full]
    assert all(h.payload for h in full) and not any(h.payload for h in bare)
    even = Filter(must=(Condition(key="even", op="equals", value=True),))
    hits = store.search(
        SearchQuery(collection="vecs", vector=target, k=5, filter=even, with_payload=False)
    )
    assert len(hits) == 5 and all(int(h.id[1:]) % 2 == 0 for h in hits)
    assert not any(h.payload for h in hits)
    store.close()


def test_stored_cpu_spec_shares_the_served_auto_model_on_a_cpu_machine() -> None:
    """A collection stored with ``device: cpu`` (before ``auto`` became the default) reuses the
    served ``auto`` encoder when auto resolves to the CPU, instead of loading a second copy."""
    torch = pytest.importorskip("torch")
    registry = ModelRegistry({"m": {"kind": "hf-text"}}, "m", batching=None)
    served = registry.get("m")
    assert registry.spec("m").device == "auto"
    stored = dict(registry.spec("m").to_dict(), device="cpu")
    same = registry.for_spec(stored) is served
    assert same == (not torch.cuda.is_available())
