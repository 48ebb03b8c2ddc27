"""Atomic writes: a write whose catalog commit never happened leaves no trace, torn or whole;
checkpoints bound the WAL. (A real SIGKILL of the server: tests/e2e/test_crash.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from veclink.index import CheckpointPolicy
from veclink.service.catalog import CollectionRow, open_catalog
from veclink.service.models import ModelRegistry
from veclink.service.store import VectorStore

from veclink.wire.types import RecordIn, SearchQuery

DIM = 4


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, nothing catches it."""


@pytest.fixture(scope="module")
def models() -> ModelRegistry:
    return ModelRegistry({"m": {"kind": "hf-text"}}, "m")  # never loaded: vectors only


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


def rec(i: int, value: float, text: str, version: int) -> RecordIn:
    return RecordIn(
        id=f"r{i}", vector=np.full(DIM, value, np.float32), text=text, payload={"v": version}
    )


def state(store: VectorStore) -> dict[str, tuple[list[float], str | None, dict]]:
    ids = [f"r{i}" for i in range(10)]
    got, _ = store.get("c", ids, with_vectors=True)
    return {r.id: (r.vector.tolist(), r.text, r.payload) for r in got}  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["flat", "partitioned"])
@pytest.mark.parametrize("op", ["replace", "create", "delete"])
@pytest.mark.parametrize("snapshot", [False, True])
def test_a_write_that_never_committed_is_rolled_back_whole(
    tmp_path: Path,
    models: ModelRegistry,
    db_url: str | None,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    op: str,
    snapshot: bool,
) -> None:
    data = tmp_path / "data"
    store = VectorStore(data, models, database_url=db_url)
    store.create_collection("c", dim=DIM, metric="ip", index_kind=kind)
    store.upsert("c", [rec(i, i + 1, f"old {i}", 0) for i in range(3)])
    store.upsert("c", [rec(1, 5, "second", 1)])  # an acknowledged replacement
    if snapshot:
        store.checkpoint_idle()
        store._collection("c").index.flush()
    before = state(store)
    assert before["r1"] == ([5.0] * DIM, "second", {"v": 1})

    def crash(self: Session) -> None:
        raise Crash  # the index write is on disk (WAL fsynced); the catalog never commits

    monkeypatch.setattr(Session, "commit", crash)
    with pytest.raises(Crash):
        if op == "replace":
            store.upsert("c", [rec(1, 9, "unacknowledged", 2)])
        elif op == "create":
            store.upsert("c", [rec(7, 9, "unacknowledged", 2)])
        else:
            store.delete("c", ["r1"])
    monkeypatch.undo()
    # the same process goes on: the next call reopens the index up to the last commit
    assert state(store) == before
    hits = store.search(SearchQuery(collection="c", vector=np.ones(DIM, np.float32), k=10))
    assert sorted(h.id for h in hits) == ["r0", "r1", "r2"]
    assert hits[0].id == "r1" and hits[0].score == pytest.approx(5.0 * DIM)
    # and a new process sees the same (no snapshot was written over the rolled-back state)
    fresh = VectorStore(data, models, database_url=db_url)
    assert state(fresh) == before
    assert len(fresh._collection("c").index) == 3
    # writes continue normally after the rollback, and survive a reopen
    fresh.upsert("c", [rec(1, 7, "third", 3)])
    fresh.close()
    store.engine.dispose()
    again = VectorStore(data, models, database_url=db_url)
    assert state(again)["r1"] == ([7.0] * DIM, "third", {"v": 3})
    again.close()


def test_checkpoints_bound_the_wal(tmp_path: Path, models: ModelRegistry) -> None:
    data = tmp_path / "data"
    store = VectorStore(
        data, models, checkpoints=CheckpointPolicy(records=4, wal_bytes=0, seconds=0)
    )
    store.create_collection("c", dim=DIM, metric="ip", index_kind="flat")
    index = store._collection("c").index
    for i in range(25):
        store.upsert("c", [rec(i % 10, i, f"t{i}", i)])
        assert index.stats()["wal_records"] < 4
    meta = json.loads((index.path / "meta.json").read_text())  # type: ignore[operator]
    assert meta["snapshot_lsn"] == 24 and meta["snapshot_stamp"] == 24
    # a kill now (no close, no snapshot) replays at most the few records after it
    store.engine.dispose()
    again = VectorStore(data, models)
    assert state(again)["r4"] == ([24.0] * DIM, "t24", {"v": 24})
    assert again._collection("c").index.stats()["wal_records"] == 1
    again.close()


def test_idle_collections_are_checkpointed_by_age(tmp_path: Path, models: ModelRegistry) -> None:
    store = VectorStore(
        tmp_path / "data", models, checkpoints=CheckpointPolicy(records=0, wal_bytes=0, seconds=0.5)
    )
    store.create_collection("c", dim=DIM, index_kind="partitioned")
    store.upsert("c", [rec(0, 1, "a", 0)])
    index = store._collection("c").index
    assert index.stats()["wal_records"] == 1
    assert store.checkpoint_idle() == 0  # not old enough yet
    time.sleep(0.6)
    assert store.checkpoint_idle() == 1
    assert index.stats()["wal_records"] == 0
    assert store.checkpoint_idle() == 0  # nothing left to snapshot
    store.close()


def test_a_catalog_from_before_write_versions_is_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    engine, _ = open_catalog(url)
    with engine.begin() as conn:  # the table as earlier versions created it
        conn.execute(text("ALTER TABLE veclink_collections DROP COLUMN write_version"))
    engine.dispose()
    engine, sessions = open_catalog(url)
    with sessions() as session:
        session.add(CollectionRow(name="c", dim=4, metric="ip", index_kind="flat", index_dir="d"))
        session.commit()
        assert session.scalar(select(CollectionRow.write_version)) == 0
    engine.dispose()
