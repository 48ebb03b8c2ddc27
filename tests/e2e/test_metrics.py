"""/metrics after real work: encodes, searches, records, vectors, WAL, fsyncs and jobs.

Counters and histograms are process-wide (every test server adds to them), so the test
compares two scrapes around its own work; gauges belong to one server and are compared
with what that server holds.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from veclink.service.linkage_jobs import LinkageJobs
from veclink.service.metrics import StoreCollector
from veclink.service.models import ModelRegistry
from veclink.service.settings import DEFAULT_MODEL
from veclink.service.store import VectorStore

from tests.fixtures.server import RunningServer, server_settings
from veclink.client import Client

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_text(server: RunningServer) -> str:
    assert server.server.probes is not None
    url = f"http://127.0.0.1:{server.server.probes.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return resp.read().decode()


def scrape(server: RunningServer) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(metrics_text(server))
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled series not yet observed."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def _wait_succeeded(client: Client, job_id: str) -> None:
    final = list(client.watch_job(job_id))[-1]
    assert final.state == "succeeded", final


def test_metrics_follow_real_work(tmp_path: Path) -> None:
    server = RunningServer(server_settings(tmp_path / "a"))
    other = None
    try:
        before = scrape(server)
        with Client(server.address) as c:
            c.create_collection("docs", model=DEFAULT_MODEL, index_kind="flat")
            c.create_collection("vecs", dimensions=4, metric="ip", index_kind="partitioned")
            texts = ["a dog barks", "a car drives", "a bank lends money"]
            c.upsert("docs", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)])
            rng = np.random.default_rng(0)
            c.upsert("vecs", [{"id": f"v{i}", "vector": rng.normal(size=4)} for i in range(5)])
            assert c.delete("vecs", ["v0"]) == 1
            assert c.search("docs", text="a pet", k=2)
            assert c.search("vecs", vector=np.ones(4), k=2)
            assert c.embed(["one", "two"]).shape[0] == 2
            names = ["anna smith", "ana smith", "bob jones", "robert jones", "carla diaz"]
            rows = [{"id": str(i), "name": n} for i, n in enumerate(names)]
            _wait_succeeded(c, c.start_job("dedupe", rows, spec={"blocking": {"k": 3}}))
        after = scrape(server)

        # gauges of this server, read from the store at scrape time
        assert series(after, "veclink_collection_records") == {
            frozenset({("collection", "docs")}): 3,
            frozenset({("collection", "vecs")}): 4,
        }
        assert value(after, "veclink_collection_vectors", collection="docs", index_kind="flat") == 3
        vecs = {"collection": "vecs", "index_kind": "partitioned"}
        assert value(after, "veclink_collection_vectors", **vecs) == 4
        # no checkpoint yet: vecs' WAL holds its upsert and its delete, 5 vectors of 4 floats
        assert value(after, "veclink_wal_records", collection="vecs") == 2
        assert value(after, "veclink_wal_bytes", collection="vecs") > 5 * 4 * 4
        assert value(after, "veclink_wal_bytes", collection="docs") > 3 * 384 * 4
        jobs = series(after, "veclink_linkage_jobs")
        assert len(jobs) == 10  # every kind and state, zeros included
        assert {k: v for k, v in jobs.items() if v} == {
            frozenset({("kind", "dedupe"), ("state", "succeeded")}): 1
        }

        # process-wide histograms and counters: what this work added
        assert delta(before, after, "veclink_wal_fsync_seconds_count") >= 3
        assert delta(before, after, "veclink_wal_fsync_seconds_sum") > 0
        model = {"model": DEFAULT_MODEL}
        assert delta(before, after, "veclink_encode_seconds_count", **model) == 3
        assert delta(before, after, "veclink_encode_seconds_sum", **model) > 0
        assert delta(before, after, "veclink_encoded_inputs_total", **model) == 3 + 1 + 2
        for kind in ("flat", "partitioned"):
            assert delta(before, after, "veclink_search_seconds_count", index_kind=kind) == 1
        assert delta(before, after, "veclink_rpcs_total", method="Upsert", code="OK") == 2
        assert delta(before, after, "veclink_rpc_seconds_count", method="Search") == 2

        # every veclink metric is documented in the README's table
        readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
        exported = {
            f.name + ("_total" if f.type == "counter" else "")
            for f in text_string_to_metric_families(metrics_text(server))
            # the text format lists a counter's or histogram's creation time on its own
            if f.name.startswith("veclink_") and not f.name.endswith("_created")
        }
        assert len(exported) == 11
        assert {n for n in exported if f"| `{n}` |" not in readme} == set()

        # a second server in the process serves its own gauges, and the shared histograms
        other = RunningServer(server_settings(tmp_path / "b"))
        theirs = scrape(other)
        assert series(theirs, "veclink_collection_records") == {}
        assert set(series(theirs, "veclink_linkage_jobs").values()) == {0}
        assert value(theirs, "veclink_wal_fsync_seconds_count") >= value(
            after, "veclink_wal_fsync_seconds_count"
        )

        with Client(server.address) as c:
            c.delete_collection("vecs")
        gone = scrape(server)
        assert series(gone, "veclink_collection_records") == {
            frozenset({("collection", "docs")}): 3
        }
        assert series(gone, "veclink_wal_bytes").keys() == {frozenset({("collection", "docs")})}
    finally:
        server.stop()
        if other is not None:
            other.stop()


def test_an_unreachable_job_table_leaves_only_the_job_gauge_out(tmp_path: Path) -> None:
    store = VectorStore(tmp_path / "data", ModelRegistry({"m": {"kind": "hf-text"}}, "m"))
    store.create_collection("c", dim=2)
    jobs = LinkageJobs(store.engine)
    try:
        collector = StoreCollector(store, jobs)
        assert [m.name for m in collector.collect()][-1] == "veclink_linkage_jobs"
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE veclink_linkage_jobs"))
        families = {m.name: m for m in collector.collect()}
        assert "veclink_linkage_jobs" not in families
        assert [s.value for s in families["veclink_collection_records"].samples] == [0]
        assert "veclink_linkage_jobs" not in {m.name for m in StoreCollector(store).collect()}
    finally:
        jobs.close()
        store.close()
