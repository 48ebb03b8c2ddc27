"""Property-based fuzzing of every RPC against a real in-process server (issue 13).

Any request message of any RPC (hostile field values, deep JSON, huge strings) and any raw
bytes get a precise status, never UNKNOWN or INTERNAL, and leave the stored data unchanged
unless a write succeeded. bench/fuzz.py runs the same checks for many more requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from veclink.v1 import collections_pb2, common_pb2, linkage_pb2, points_pb2

from tests.fixtures.fuzz import FIXED, FuzzTarget, Method, all_methods, request_strategy
from tests.fixtures.server import RunningServer, server_settings
from veclink.wire.values import to_object

METHODS = all_methods()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    running = RunningServer(server_settings(tmp_path_factory.mktemp("fuzz")))
    fuzz = FuzzTarget(running.address)
    yield fuzz
    fuzz.close()
    running.stop()


def test_methods_cover_every_rpc() -> None:
    names = {m.path for m in METHODS}
    assert len([n for n in names if n.startswith("/veclink.v1.")]) == 16
    assert "/grpc.health.v1.Health/Check" in names
    assert "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" in names


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_fuzz_rpc(target: FuzzTarget, method: Method) -> None:
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests=request_strategy(method, target.pools))
    def run(requests: list[bytes]) -> None:
        before = len(target.failures)
        target.check(method, requests)
        assert target.failures[before:] == []

    run()
    tally = target.tally[method.name]
    assert tally.requests > 0 and tally.bad == 0 and tally.changed == 0


def test_the_reported_inputs_get_precise_codes(target: FuzzTarget) -> None:
    """The inputs issue 13 measured as UNKNOWN/INTERNAL, one by one."""
    by_name = {m.name: m for m in METHODS}
    nan_payload = points_pb2.Record(id="p0", vector=common_pb2.Vector(values=[1, 2, 3, 4]))
    nan_payload.payload.CopyFrom(to_object({"a": math.nan}))
    huge_vector = points_pb2.Record(id="p0", vector=common_pb2.Vector(values=[3e38, 1, 1, 1]))
    job = linkage_pb2.StartJobRequest(
        kind=linkage_pb2.JOB_KIND_DEDUPE,
        left=linkage_pb2.TableSource(path="/tmp/" + "x" * 300 + ".csv"),
    )
    nan_options = collections_pb2.CreateCollectionRequest(name="nan-eps", dimensions=4)
    nan_options.index_options.partitioned.eps = math.nan
    nan_spec = linkage_pb2.StartJobRequest(kind=linkage_pb2.JOB_KIND_DEDUPE)
    nan_spec.spec.blocking.margin = math.inf
    unset_value = points_pb2.Record(id="p0", vector=common_pb2.Vector(values=[1, 2, 3, 4]))
    unset_value.payload.fields["a"].SetInParent()
    cases = [
        ("Upsert", points_pb2.UpsertRequest(collection=FIXED, records=[nan_payload]), "INVALID"),
        ("Upsert", points_pb2.UpsertRequest(collection=FIXED, records=[unset_value]), "INVALID"),
        ("CreateCollection", nan_options, "INVALID"),
        ("StartJob", nan_spec, "INVALID"),
        ("Upsert", points_pb2.UpsertRequest(collection=FIXED, records=[huge_vector]), "INVALID"),
        (
            "CreateCollection",
            collections_pb2.CreateCollectionRequest(name="big", dimensions=2**31),
            "INVALID",
        ),
        (
            "GetResults",
            linkage_pb2.GetResultsRequest(job_id=target.pools.job_ids[0], page_token="9" * 40),
            "INVALID",
        ),
        ("StartJob", job, "INVALID"),
        ("Search", points_pb2.SearchRequest(collection="docs", text="x" * 3_000_000), "RESOURCE"),
        ("GetCollection", collections_pb2.GetCollectionRequest(name="x" * 70_000), "INVALID"),
    ]
    for name, request, code in cases:
        got, details = target.call(by_name[name], [request.SerializeToString()])
        assert got.name.startswith(code), (name, got, details)
        assert len(details) < 300, details
    for method in METHODS:
        got, details = target.call(method, [b"\xff\xff\xff"])
        assert got == grpc.StatusCode.INVALID_ARGUMENT, (method.path, got, details)
    assert target.stored() == target.snapshot
