"""The server in-process on a free port, exercised through the client, raw stubs and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from veclink.v1 import points_pb2, points_pb2_grpc

from tests.fixtures.server import RunningServer, server_settings
from veclink.client import Client, PermissionDenied
from veclink.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted
from veclink.wire import Condition, Filter, Job, ModelInfo

BIG = 2**53 + 1  # the first integer a double cannot hold


def assert_same_json(got: object, sent: object) -> None:
    """Equal, and every number of the same type (5 is not 5.0)."""
    assert got == sent
    if isinstance(sent, dict):
        assert isinstance(got, dict)
        for key, value in sent.items():
            assert_same_json(got[key], value)
    elif isinstance(sent, list):
        assert isinstance(got, list)
        for a, b in zip(got, sent, strict=True):
            assert_same_json(a, b)
    else:
        assert type(got) is type(sent), (got, sent)


def _assert_numbers_typed(metrics: dict) -> None:
    """Counts in job metrics are ints, the rest floats (Struct made every number a float)."""
    counts = [k for k in ("candidates", "matches", "entities", "largest_entity") if k in metrics]
    assert len(counts) >= 2, metrics
    assert all(type(metrics[k]) is int for k in counts), metrics
    assert type(metrics["threshold"]) is float and type(metrics["precision_target"]) is float


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("data")
    running = RunningServer(server_settings(data, sources={"path_dirs": [str(FIX)]}))
    yield running
    running.stop()


@pytest.fixture
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.address) as c:
        yield c


def test_health_and_reflection(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", "veclink.v1.Points"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        names = {
            s.name
            for r in stub.ServerReflectionInfo(iter([req]))
            for s in r.list_services_response.service
        }
        assert {
            "veclink.v1.Embeddings",
            "veclink.v1.Collections",
            "veclink.v1.Points",
            "veclink.v1.Linkage",
            "grpc.health.v1.Health",
        } <= names


def test_embeddings(client: Client) -> None:
    models = client.list_models()
    assert models == [
        ModelInfo(
            name="all-MiniLM-L6-v2",
            dimensions=384,
            modality="text",
            spec=models[0].spec,
            is_default=True,
        )
    ]
    spec = models[0].spec
    assert spec["kind"] == "hf-text"
    ints = {k: v for k, v in spec.items() if k in ("max_length", "batch_size")}
    assert ints and all(type(v) is int for v in ints.values()), spec  # not 128.0
    v = client.embed(["a dog barks", "a puppy yaps", "interest rates rose"])
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > v[0] @ v[2]
    short = client.embed(["a dog barks"], dimensions=64, normalize=True)
    assert short.shape == (1, 64)
    assert np.linalg.norm(short[0]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(NotFound, match="not served"):
        client.embed(["x"], model="gpt-17")
    with pytest.raises(InvalidArgument, match=r"inputs\[1\]"):
        client.embed(["ok", ""])
    with pytest.raises(InvalidArgument, match="inputs"):
        client.embed([])
    with pytest.raises(InvalidArgument, match="dimensions"):
        client.embed(["x"], dimensions=1000)
    with pytest.raises(InvalidArgument, match="does not take instructions"):
        client.embed(["x"], instruction="Retrieve passages that answer the question")


def test_embed_output_options(client: Client) -> None:
    """Matryoshka truncation renormalises unit vectors; int8 / uint8 / binary / ubinary
    come back as sentence-transformers lays them out, each vector on its own scale."""
    texts = ["a dog barks", "a puppy yaps", "interest rates rose sharply this quarter"]
    full = client.embed(texts)
    short = client.embed(texts, dimensions=128)  # no normalize asked: the model's are unit
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-5)
    expect = full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expect, atol=1e-5)
    q = client.embed_quantized(texts, precision="int8")
    assert q.values.dtype == np.int8 and q.values.shape == (3, 384) and q.scales is not None
    assert np.abs(q.values).max() == 127
    back = q.to_float32()
    cos = np.sum(back * full, axis=1) / np.linalg.norm(back, axis=1)
    assert cos.min() > 0.999
    # a vector does not depend on the request it is in
    alone = client.embed_quantized(texts[:1], precision="int8")
    np.testing.assert_array_equal(alone.values[0], q.values[0])
    u = client.embed_quantized(texts, precision="uint8")
    np.testing.assert_array_equal(u.values.astype(np.int16) - 128, q.values)
    b = client.embed_quantized(texts, precision="ubinary", dimensions=100)
    assert b.values.dtype == np.uint8 and b.values.shape == (3, 13) and b.dimensions == 100
    np.testing.assert_array_equal(b.values, np.packbits(short[:, :100] > 0, axis=1))
    s = client.embed_quantized(texts, precision="binary")
    np.testing.assert_array_equal(s.values, (np.packbits(full > 0, axis=1) - 128).astype(np.int8))
    with pytest.raises(InvalidArgument, match="precision"):
        client.embed_quantized(texts, precision="int4")


def test_collections_and_points(client: Client) -> None:
    info = client.create_collection("docs", model="all-MiniLM-L6-v2")
    assert (info.name, info.dim, info.metric, info.count) == ("docs", 384, "cosine", 0)
    with pytest.raises(AlreadyExists):
        client.create_collection("docs", model="all-MiniLM-L6-v2")
    with pytest.raises(InvalidArgument, match="dimensions"):
        client.create_collection("docs2", model="all-MiniLM-L6-v2", dimensions=12)
    with pytest.raises(NotFound):
        client.get_collection("missing")
    records = [
        {
            "id": "dog",
            "text": "dog: a domesticated canine that barks",
            "payload": {"kind": "animal", "legs": 4, "sku": BIG, "price": 5.0},
        },
        {
            "id": "cat",
            "text": "cat: a small domesticated feline",
            "payload": {"kind": "animal", "legs": 4},
        },
        {
            "id": "car",
            "text": "car: a motor vehicle with four wheels",
            "payload": {"kind": "vehicle"},
        },
        {
            "id": "bank",
            "text": "bank: an institution that accepts deposits",
            "payload": {"kind": "business"},
        },
    ]
    assert client.upsert("docs", records) == 4
    hits = client.search("docs", text="a pet that barks", k=2)
    assert [h.id for h in hits][0] == "dog" and hits[0].payload["kind"] == "animal"
    assert hits[0].text.startswith("dog:")
    # numbers come back as sent: ints exact (2^53 + 1 too), floats as floats
    assert_same_json(hits[0].payload, records[0]["payload"])
    hits = client.search("docs", text="a pet that barks", k=4, filter={"kind": "vehicle"})
    assert [h.id for h in hits] == ["car"]
    hits = client.search("docs", text="a pet", k=4, filter={"sku": BIG})  # exact equality
    assert [h.id for h in hits] == ["dog"]
    assert client.search("docs", text="a pet", k=4, filter={"sku": BIG - 1}) == []
    vec = client.embed(["car: a motor vehicle with four wheels"], role="document")[0]
    assert client.search("docs", vector=vec, k=1)[0].id == "car"
    got, missing = client.get("docs", ["cat", "nope"], with_vectors=True)
    assert [r.id for r in got] == ["cat"] and missing == ["nope"] and got[0].vector.shape == (384,)
    assert_same_json(got[0].payload, records[1]["payload"])
    assert_same_json(client.get("docs", ["dog"])[0][0].payload, records[0]["payload"])
    # bad input is rejected and changes nothing
    with pytest.raises(InvalidArgument, match=r"records\[1\]\.text"):
        client.upsert("docs", [{"id": "ok", "text": "fine"}, {"id": "empty", "text": ""}])
    with pytest.raises(InvalidArgument, match=r"records\[0\]\.vector has dimension 3"):
        client.upsert("docs", [{"id": "v", "vector": [1.0, 2.0, 3.0]}])
    with pytest.raises(InvalidArgument, match="dimension 2"):
        client.search("docs", vector=[1.0, 2.0], k=1)
    with pytest.raises(NotFound, match="missing"):
        client.upsert("missing", records)
    with pytest.raises(NotFound):
        client.search("missing", text="x")
    info = client.get_collection("docs")
    assert info.count == 4
    assert info.index_stats["kind"] == "partitioned" and info.index_stats["size"] == 4
    for key in ("dim", "size", "partitions", "splits", "memory_bytes"):  # not 384.0
        assert type(info.index_stats[key]) is int, (key, info.index_stats[key])
    assert type(info.index_stats["options"]["split_limit"]) is int
    # streaming bulk upsert
    n = client.upsert_stream(
        "docs",
        [
            [{"id": f"s{i}", "text": f"sentence number {i}"} for i in range(j, j + 5)]
            for j in range(0, 15, 5)
        ],
    )
    assert n == 15 and client.get_collection("docs").count == 19
    with pytest.raises(InvalidArgument, match="batch 1"):
        client.upsert_stream("docs", [[{"id": "t1", "text": "fine"}], [{"id": "t2", "text": ""}]])
    assert client.get_collection("docs").count == 20  # batch 0 was acknowledged and kept
    assert client.delete("docs", ["s0", "s1", "t1", "never"]) == 3
    assert client.get_collection("docs").count == 17
    assert [c.name for c in client.list_collections()] == ["docs"]
    client.delete_collection("docs")
    with pytest.raises(NotFound):
        client.delete_collection("docs")


def test_vectors_only_collection_and_filters(client: Client) -> None:
    info = client.create_collection(
        "vecs",
        dimensions=4,
        metric="l2",
        index_kind="partitioned",
        index_options={"split_limit": 512, "nprobe": 64, "eps": 0.5},
    )
    assert info.index_options == {"split_limit": 512, "nprobe": 64, "eps": 0.5}
    assert_same_json(client.get_collection("vecs").index_options, info.index_options)
    assert type(client.get_collection("vecs").index_stats["options"]["nprobe"]) is int
    client.upsert(
        "vecs", [{"id": str(i), "vector": [i, 0, 0, 0], "payload": {"n": i}} for i in range(10)]
    )
    hits = client.search("vecs", vector=[3.2, 0, 0, 0], k=3)
    assert [h.id for h in hits] == ["3", "4", "2"]
    assert [h.payload["n"] for h in hits] == [3, 4, 2]
    assert all(type(h.payload["n"]) is int for h in hits)
    ranged = client.search(
        "vecs",
        vector=[0, 0, 0, 0],
        k=10,
        filter=Filter(must=(Condition(key="n", op="range", gte=5, lt=8),)),
    )
    assert sorted(h.id for h in ranged) == ["5", "6", "7"]
    anyof = client.search(
        "vecs",
        vector=[0, 0, 0, 0],
        filter=Filter(must=(Condition(key="n", op="any_of", value=[1, 9]),)),
    )
    assert sorted(h.id for h in anyof) == ["1", "9"]
    # the options a partitioned index takes, typed: a wrong type or key is named
    with pytest.raises(InvalidArgument, match="split_limit: must be an integer, got 512.5"):
        client.create_collection("bad", dimensions=4, index_options={"split_limit": 512.5})
    with pytest.raises(InvalidArgument, match="colour: unknown key"):
        client.create_collection("bad", dimensions=4, index_options={"colour": 1})
    with pytest.raises(InvalidArgument, match="split_limit: must be an integer >= 8, got 4"):
        client.create_collection("bad", dimensions=4, index_options={"split_limit": 4})
    with pytest.raises(InvalidArgument, match="a flat index takes no options"):
        client.create_collection(
            "bad", dimensions=4, index_kind="flat", index_options={"nprobe": 1}
        )
    with pytest.raises(InvalidArgument, match="postings: must be one of float32, fp16, int8"):
        client.create_collection("bad", dimensions=4, index_options={"postings": "int4"})
    with pytest.raises(InvalidArgument, match="rerank: must be an integer in"):
        client.create_collection("bad", dimensions=4, index_options={"rerank": 0})
    # quantised postings over the wire: the option comes back typed, searches re-rank exactly
    q8 = client.create_collection(
        "q8", dimensions=4, metric="l2", index_options={"postings": "int8", "rerank": 8}
    )
    assert q8.index_options == {"postings": "int8", "rerank": 8}
    client.upsert("q8", [{"id": str(i), "vector": [i, 0, 0, 0]} for i in range(10)])
    assert [h.id for h in client.search("q8", vector=[3.2, 0, 0, 0], k=3)] == ["3", "4", "2"]
    assert client.get_collection("q8").index_stats["options"]["postings"] == "int8"
    with pytest.raises(InvalidArgument, match="no model"):
        client.search("vecs", text="hello")
    req = points_pb2.SearchRequest(collection="vecs", k=10)
    req.vector.values.extend([0, 0, 0, 0])
    cond = req.filter.must.add(key="n")
    cond.range.gte = 5
    with grpc.insecure_channel(client.channel._channel.target().decode()) as ch:  # type: ignore[attr-defined]
        resp = points_pb2_grpc.PointsStub(ch).Search(req)
        assert sorted(h.id for h in resp.hits) == ["5", "6", "7", "8", "9"]
        bad = points_pb2.SearchRequest(collection="vecs", k=3)
        bad.vector.values.extend([0, 0, 0, 0])
        bad.filter.must.add(key="")
        with pytest.raises(grpc.RpcError) as err:
            points_pb2_grpc.PointsStub(ch).Search(bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "filter.must[0].key" in err.value.details()
    client.delete_collection("vecs")


def test_oversized_message_is_resource_exhausted(client: Client) -> None:
    client.create_collection("big", dimensions=4)
    huge = [
        {"id": str(i), "vector": [0.0] * 4, "payload": {"blob": "x" * 100_000}} for i in range(60)
    ]
    with pytest.raises(ResourceExhausted):
        client.upsert("big", huge)
    assert client.get_collection("big").count == 0
    client.delete_collection("big")


FIX = Path(__file__).resolve().parents[1] / "fixtures" / "linkage"


def _rows(name: str) -> list[dict[str, str]]:
    import csv

    with open(FIX / name, encoding="latin-1", newline="") as f:
        return list(csv.DictReader(f))


def _wait(client: Client, job_id: str) -> Job:
    updates = list(client.watch_job(job_id))
    assert updates, "WatchJob streamed nothing"
    final = updates[-1]
    assert final.state == "succeeded", final
    return final


def test_linkage_link_job_and_incremental_match(client: Client) -> None:
    gold = _rows("dblp_acm_gold.csv")[:25]
    dblp = {r["id"]: r for r in _rows("dblp_sample.csv")}
    acm = {r["id"]: r for r in _rows("acm_sample.csv")}
    left = [dblp[g["idDBLP"]] for g in gold if g["idDBLP"] in dblp]
    right = [acm[g["idACM"]] for g in gold if g["idACM"] in acm]
    assert len(left) >= 20 and len(right) >= 20
    job_id = client.start_job(
        "link", left[1:], right, spec={"precision": 0.9, "blocking": {"k": 30, "min_k": 3}}
    )
    final = _wait(client, job_id)
    _assert_numbers_typed(final.metrics)
    assert client.get_job(job_id).metrics == final.metrics
    pairs, entities = client.job_results(job_id, page_size=7)  # several pages
    truth = {(g["idDBLP"], g["idACM"]) for g in gold}
    correct = sum((a, b) in truth for a, b, _ in pairs)
    assert len(pairs) >= 10 and correct / len(pairs) >= 0.8
    assert entities == []
    # a new left record arrives: its true match is among the candidates
    newcomer = left[0]
    want = next(g["idACM"] for g in gold if g["idDBLP"] == newcomer["id"])
    result = client.match(job_id, newcomer, k=3)
    assert want in [c.record_id for c in result.candidates]
    with pytest.raises(NotFound):
        client.get_job("no-such-job")
    with pytest.raises(NotFound):
        client.match("no-such-job", newcomer)


def test_linkage_match_after_restart(tmp_path: Path) -> None:
    """A finished job's matcher is rebuilt from the database by a new server on the same data."""
    gold = _rows("dblp_acm_gold.csv")[:30]
    dblp = {r["id"]: r for r in _rows("dblp_sample.csv")}
    acm = {r["id"]: r for r in _rows("acm_sample.csv")}
    left = [dblp[g["idDBLP"]] for g in gold if g["idDBLP"] in dblp]
    right = [acm[g["idACM"]] for g in gold if g["idACM"] in acm]
    settings = server_settings(tmp_path / "data")
    newcomer, visitor = left[0], {**left[1], "id": "visitor"}
    first = RunningServer(settings)
    try:
        with Client(first.address) as c:
            job_id = c.start_job("link", left[2:], right, spec={"precision": 0.9})
            _wait(c, job_id)
            assigned = c.match(job_id, newcomer, k=3, assign=True)
            peek = c.match(job_id, visitor, k=3)
            results = c.job_results(job_id)
    finally:
        first.stop()
    want = next(g["idACM"] for g in gold if g["idDBLP"] == newcomer["id"])
    assert want in [x.record_id for x in assigned.candidates]
    second = RunningServer(settings)  # same data dir, same catalog database
    try:
        with Client(second.address) as c:
            assert c.job_results(job_id) == results
            assert c.match(job_id, visitor, k=3) == peek
            # the assignment made before the restart holds: it was replayed, not forgotten
            with pytest.raises(InvalidArgument, match="already matched"):
                c.match(job_id, newcomer, k=3, assign=True)
            assert (
                c.match(job_id, {**newcomer, "id": "again"}, k=3).candidates == assigned.candidates
            )
            with pytest.raises(NotFound):
                c.match("no-such-job", newcomer)
    finally:
        second.stop()


def test_linkage_dedupe_job_from_server_path(client: Client) -> None:
    job_id = client.start_job("dedupe", str(FIX / "febrl1_sample.csv"), left_id="rec_id")
    final = _wait(client, job_id)
    assert final.kind == "dedupe"
    _, entities = client.job_results(job_id)
    ids = [r["rec_id"] for r in _rows("febrl1_sample.csv")]
    assert sorted(i for i, _ in entities) == sorted(ids)
    by_id = dict(entities)
    # febrl duplicates are named rec-N-org / rec-N-dup-M: most share their original's entity
    dups = [
        i
        for i in ids
        if "-dup-" in i and i.replace("-dup-", "-org").rsplit("-", 1)[0] + "-org" in by_id
    ]
    together = sum(by_id[i] == by_id[i.split("-dup-")[0] + "-org"] for i in dups)
    assert dups and together / len(dups) >= 0.8


def test_linkage_integers_in_rows_and_records_stay_exact(client: Client) -> None:
    """Integer ids and values reach the job as sent: 2^53 + 1 is not rounded to 2^53 + 2."""
    names = ["anna smith", "ana smith", "bob jones", "robert jones", "carla diaz", "karla diaz"]
    rows = [{"id": BIG + i, "name": n, "born": 1980 + i // 2} for i, n in enumerate(names)]
    job_id = client.start_job("dedupe", rows, spec={"blocking": {"k": 3, "min_k": 1}})
    final = _wait(client, job_id)
    _assert_numbers_typed(final.metrics)
    entities = client.job_results(job_id).entities
    assert sorted(e.id for e in entities) == sorted(str(r["id"]) for r in rows)
    result = client.match(job_id, {"id": BIG + 100, "name": "anna smith", "born": 1980}, k=2)
    assert result.candidates and result.candidates[0].record_id in {str(BIG), str(BIG + 1)}


def test_linkage_bad_input_rejected_before_work(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="nope"):
        client.start_job("link", [{"id": "1", "t": "a"}], [{"id": "2", "t": "b"}], left_id="nope")
    with pytest.raises(InvalidArgument, match="duplicate"):
        client.start_job("dedupe", [{"id": "1", "t": "a"}, {"id": "1", "t": "b"}])
    with pytest.raises(InvalidArgument):
        client.start_job("dedupe", [])
    with pytest.raises(NotFound):
        client.start_job("dedupe", str(FIX / "no_such_file.csv"))
    # path sources are confined to sources.path_dirs, however the path is spelt
    for outside in ("/etc/passwd", str(FIX / ".." / ".." / "conftest.py")):
        with pytest.raises(PermissionDenied, match="PERMISSION_DENIED.*sources.path_dirs"):
            client.start_job("dedupe", outside)
    with pytest.raises(InvalidArgument, match="spec"):
        client.start_job("dedupe", [{"id": "1", "t": "a"}], spec={"precision": 7})


def test_api_keys(tmp_path: Path) -> None:
    running = RunningServer(
        server_settings(tmp_path, auth={"read_keys": ["r"], "write_keys": ["w"]})
    )
    try:
        with grpc.insecure_channel(running.address) as ch:  # health stays open
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        with (
            Client(running.address) as anon,
            pytest.raises(PermissionDenied, match="UNAUTHENTICATED"),
        ):
            anon.list_collections()
        with Client(running.address, api_key="w") as writer:
            writer.create_collection("c", dimensions=2)
        with Client(running.address, api_key="r") as reader:
            assert [c.name for c in reader.list_collections()] == ["c"]
            with pytest.raises(PermissionDenied, match="PERMISSION_DENIED"):
                reader.upsert("c", [{"id": "a", "vector": [1, 2]}])
            with pytest.raises(PermissionDenied, match="PERMISSION_DENIED"):
                reader.upsert_stream("c", [[{"id": "a", "vector": [1, 2]}]])
    finally:
        running.stop()


def _cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veclink.cli", *args, "--server", server.address],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_cli(server: RunningServer, tmp_path: Path) -> None:
    r = _cli(server, "collection", "create", "cli-docs")
    assert r.returncode == 0, r.stderr
    data = tmp_path / "docs.csv"
    data.write_text(
        "id,text,year\nd1,dog: a domesticated canine that barks,2001\n"
        "d2,violin: a bowed string instrument,1999\nd3,bank: a financial institution,2010\n"
    )
    r = _cli(server, "upsert", "cli-docs", str(data))
    assert r.returncode == 0, r.stderr
    assert "upserted 3" in r.stdout
    r = _cli(server, "search", "cli-docs", "a domestic animal that barks", "-k", "2", "--json")
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)
    assert hits[0]["id"] == "d1" and hits[0]["payload"]["year"] == 2001
    assert type(hits[0]["payload"]["year"]) is int  # not 2001.0
    r = _cli(server, "embed", "hello world", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)[0]["embedding"]) == 384
    r = _cli(server, "search", "no-such-collection", "x")
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("name,text\nx,y\n")
    r = _cli(server, "upsert", "cli-docs", str(bad))
    assert r.returncode == 1 and "'id' column" in r.stderr
    r = _cli(server, "collection", "delete", "cli-docs")
    assert r.returncode == 0


def test_demo_collection_answers_dog_query(tmp_path: Path) -> None:
    from veclink.service.demo import load_demo
    from veclink.service.server import build_store

    from veclink.wire.types import SearchQuery

    store = build_store(server_settings(tmp_path))
    assert load_demo(store) is True
    assert load_demo(store) is False  # idempotent
    hits = store.search(SearchQuery(collection="wordnet", text="a domestic animal that barks", k=5))
    assert "02084071n" in [h.id for h in hits]  # dog (noun): a member of the genus Canis...
    store.close()


def test_metrics_count_rpcs_by_status(client: Client) -> None:
    from prometheus_client import REGISTRY

    def count(code: str) -> float:
        labels = {"method": "GetCollection", "code": code}
        return REGISTRY.get_sample_value("veclink_rpcs_total", labels) or 0.0

    before_ok, before_missing = count("OK"), count("NOT_FOUND")
    client.create_collection("metered", dimensions=2)
    client.get_collection("metered")
    with pytest.raises(NotFound):
        client.get_collection("not-there")
    # the server records a call just after sending its status: allow it a moment
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and count("NOT_FOUND") < before_missing + 1:
        time.sleep(0.01)
    assert count("OK") == before_ok + 1
    assert count("NOT_FOUND") == before_missing + 1
    client.delete_collection("metered")


def test_cli_linkage_as_server_job(server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "clusters.csv"
    r = _cli(
        server,
        "dedupe",
        str(FIX / "febrl1_sample.csv"),
        "--id",
        "rec_id",
        "--out",
        str(out),
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "id,entity_id" and len(lines) == 1 + len(_rows("febrl1_sample.csv"))
    r = _cli(server, "dedupe", str(FIX / "febrl1_sample.csv"), "--out", str(out), "--quiet")
    assert r.returncode == 1 and "rec_id" not in r.stdout and "id" in r.stderr
    r = _cli(
        server,
        "dedupe",
        str(FIX / "febrl1_sample.csv"),
        "--id",
        "rec_id",
        "--out",
        str(out),
        "--report",
        str(tmp_path / "r.html"),
    )
    assert r.returncode == 1 and "in-process only" in r.stderr
