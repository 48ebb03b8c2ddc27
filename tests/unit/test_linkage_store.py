"""Linkage jobs, pairs and entity ids persisted on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect
from veclink.linkage import LinkageSpec, link, read_table
from veclink.linkage.store import LinkageStore, create_tables

from tests.fixtures.linkage import support
from veclink.errors import InvalidArgument, NotFound

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "linkage"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'linkage.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    eng = create_engine(url)
    yield eng
    eng.dispose()


def test_job_lifecycle_and_pages(engine) -> None:
    store = LinkageStore(engine)
    create_tables(engine)  # idempotent
    assert {"veclink_linkage_jobs", "veclink_linkage_pairs", "veclink_linkage_entities"} <= set(
        inspect(engine).get_table_names()
    )
    spec = LinkageSpec().to_dict()
    job = store.create_job("link", spec, left_source="a.csv", right_source="b.csv")
    info = store.get_job(job)
    assert (info.state, info.kind, info.spec["precision"]) == ("queued", "link", 0.9)
    store.update_job(job, state="running", stage="embed", progress=0.25)
    assert store.get_job(job).stage == "embed"
    pairs = [(f"l{i}", f"r{i}", 1 - i / 100, i % 3 != 0) for i in range(30)]
    entities = [("left", f"l{i}", f"e{i}") for i in range(30)]
    store.save_results(job, pairs=pairs, entities=entities, metrics={"f": 1.0})
    info = store.get_job(job)
    assert info.state == "succeeded" and info.finished_at is not None and info.metrics == {"f": 1.0}
    page1 = store.pairs(job, limit=5)
    assert [p[0] for p in page1] == ["l1", "l2", "l4", "l5", "l7"]
    assert store.pairs(job, offset=5, limit=5)[0][0] == "l8"
    assert store.count_pairs(job) == 20 and store.count_pairs(job, accepted_only=False) == 30
    assert store.entities(job, limit=2) == [("left", "l0", "e0"), ("left", "l1", "e1")]
    # saving again replaces, it does not append
    store.save_results(job, pairs=pairs[:3], entities=[], metrics={})
    assert store.count_pairs(job, accepted_only=False) == 3
    assert [j.job_id for j in store.list_jobs()] == [job]
    store.delete_job(job)
    with pytest.raises(NotFound):
        store.get_job(job)
    with pytest.raises(InvalidArgument):
        store.create_job("merge", spec)


def test_job_counts_by_kind_and_state(engine) -> None:
    store = LinkageStore(engine)
    counts = store.job_counts()
    assert len(counts) == 10 and set(counts.values()) == {0}  # 2 kinds x 5 states
    spec = LinkageSpec().to_dict()
    jobs = [store.create_job("link", spec) for _ in range(3)] + [store.create_job("dedupe", spec)]
    store.update_job(jobs[0], state="running")
    store.update_job(jobs[1], state="failed", error="boom")
    store.update_job(jobs[3], state="succeeded")
    counts = store.job_counts()
    assert {k: n for k, n in counts.items() if n} == {
        ("link", "queued"): 1,
        ("link", "running"): 1,
        ("link", "failed"): 1,
        ("dedupe", "succeeded"): 1,
    }
    assert len(counts) == 10


def test_link_result_round_trip(engine) -> None:
    s = support
    left = read_table(FIX / "dblp_sample.csv", encoding="latin-1")
    right = read_table(FIX / "acm_sample.csv", encoding="latin-1")
    result = link(
        left,
        right,
        {"fields": s.DBLP_FIELDS},
        encoder=s.HashEncoder(),
        index_factory=s.index_factory(),
    )
    store = LinkageStore(engine)
    job = store.create_job("link", result.spec.to_dict())
    store.save_link_result(job, result)
    saved = store.pairs(job, limit=10_000)
    assert [(a, b) for a, b, _ in saved] == [(a, b) for a, b, _ in result.matches()]
    ents = store.entities(job, limit=10_000)
    assert len(ents) == len(left) + len(right)
    assert store.get_job(job).metrics["matches"] == len(saved)


def test_matcher_state_and_match_log(engine, monkeypatch) -> None:
    import veclink.linkage.store as store_module

    monkeypatch.setattr(store_module, "MATCHER_CHUNK", 1000)  # several chunks per part
    store = LinkageStore(engine)
    job = store.create_job("link", LinkageSpec().to_dict())
    assert store.matcher_parts(job) is None
    rng = np.random.default_rng(0)
    parts = {"meta.json": b'{"format": 1}', "semantic.npy": rng.bytes(4500), "empty.npy": b""}
    store.save_results(job, pairs=[], entities=[], metrics={}, matcher=parts)
    assert store.matcher_parts(job) == parts
    store.log_match(job, "r1", {"id": "r1", "title": "a", "year": 1999, "x": None})
    store.log_match(job, "r0", {"id": "r0"})
    assert store.logged_matches(job) == [
        ("r1", {"id": "r1", "title": "a", "year": 1999, "x": None}),
        ("r0", {"id": "r0"}),
    ]
    # saving the results again replaces the state and clears the log
    store.save_results(job, pairs=[], entities=[], metrics={}, matcher={"meta.json": b"{}"})
    assert store.matcher_parts(job) == {"meta.json": b"{}"}
    assert store.logged_matches(job) == []
    store.log_match(job, "r2", {"id": "r2"})
    store.delete_job(job)  # children go with it
    with pytest.raises(NotFound):
        store.matcher_parts(job)
    assert store.logged_matches(job) == []


def test_the_catalog_and_the_linkage_tables_are_created_apart(tmp_path: Path) -> None:
    """One declarative base for every table, but each side creates only its own."""
    from veclink.service.catalog import open_catalog

    catalog, _ = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    assert set(inspect(catalog).get_table_names()) == {"veclink_collections", "veclink_records"}
    catalog.dispose()
    linkage = create_engine(f"sqlite:///{tmp_path / 'linkage.db'}")
    create_tables(linkage)
    tables = set(inspect(linkage).get_table_names())
    assert "veclink_linkage_jobs" in tables and not tables & {"veclink_collections"}
    linkage.dispose()
