"""Request validation at the service boundary (service/validate.py)."""

from __future__ import annotations

import math

import pytest
from veclink.service.settings import LimitSettings
from veclink.service.validate import RequestValidator
from veclink.v1 import collections_pb2, common_pb2, linkage_pb2, points_pb2

from veclink.errors import InvalidArgument, ResourceExhausted
from veclink.wire.convert import index_options_to_proto, spec_to_proto
from veclink.wire.types import quote
from veclink.wire.values import to_object

CHECK = RequestValidator(LimitSettings(max_struct_depth=4, max_text_chars=100))


def upsert(**record: object) -> points_pb2.UpsertRequest:
    payload = record.pop("payload", None)
    r = points_pb2.Record(id="a", **record)  # type: ignore[arg-type]
    if payload is not None:
        r.payload.CopyFrom(to_object(payload))
    return points_pb2.UpsertRequest(collection="c", records=[r])


def test_quote_keeps_a_short_prefix() -> None:
    assert quote("abc") == "'abc'"
    long = quote("x" * 70_000)
    assert len(long) < 100 and "70000 characters" in long


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_anywhere_in_a_payload(bad: float) -> None:
    with pytest.raises(InvalidArgument, match="finite") as err:
        CHECK.upsert(upsert(text="t", payload={"a": [1, {"b": bad}]}))
    assert err.value.field == "records[0].payload['a'][1]['b']"


def test_depth_bounded_for_objects_and_lists() -> None:
    CHECK.upsert(upsert(text="t", payload={"a": [[1]]}))
    with pytest.raises(InvalidArgument, match="deeper"):
        CHECK.upsert(upsert(text="t", payload={"a": [[[[1]]]]}))
    with pytest.raises(InvalidArgument, match="deeper"):
        CHECK.upsert(upsert(text="t", payload={"a": {"b": {"c": {"d": {}}}}}))


def test_vectors_finite_bounded_norm_and_dimension() -> None:
    CHECK.upsert(upsert(vector=common_pb2.Vector(values=[1.0, 2.0])))
    with pytest.raises(InvalidArgument, match="norm"):
        CHECK.upsert(upsert(vector=common_pb2.Vector(values=[3e38, 1.0])))
    with pytest.raises(InvalidArgument, match="NaN"):
        CHECK.upsert(upsert(vector=common_pb2.Vector(values=[math.nan])))
    with pytest.raises(ResourceExhausted, match="dimensions") as err:
        CHECK.upsert(upsert(vector=common_pb2.Vector(values=[0.0] * 70_000)))
    assert err.value.field == "records[0].vector"
    with pytest.raises(InvalidArgument, match="dimensions"):
        CHECK.create_collection(collections_pb2.CreateCollectionRequest(name="c", dimensions=2**31))


def test_sizes_and_names() -> None:
    with pytest.raises(ResourceExhausted, match="text"):
        CHECK.upsert(upsert(text="x" * 101))
    with pytest.raises(InvalidArgument, match="appears twice"):
        CHECK.upsert(
            points_pb2.UpsertRequest(
                collection="c", records=[points_pb2.Record(id="a"), points_pb2.Record(id="a")]
            )
        )
    with pytest.raises(InvalidArgument) as err:
        CHECK.get(points_pb2.GetRequest(collection="x" * 70_000))
    assert len(str(err.value)) < 300
    search = points_pb2.SearchRequest(collection="c", text="x" * 5_000_000)
    with pytest.raises(ResourceExhausted, match="text"):
        CHECK.search(search)


def test_filters() -> None:
    req = points_pb2.SearchRequest(collection="c")
    cond = req.filter.must.add(key="n")
    cond.range.gte = math.nan
    with pytest.raises(InvalidArgument, match=r"filter.must\[0\].range.gte"):
        CHECK.search(req)
    req = points_pb2.SearchRequest(collection="c")
    req.filter.must.add(key="n").equals.double_value = math.inf
    with pytest.raises(InvalidArgument, match="equals"):
        CHECK.search(req)


def test_linkage_requests() -> None:
    with pytest.raises(InvalidArgument, match="page_token"):
        CHECK.get_results(linkage_pb2.GetResultsRequest(job_id="j", page_token="9" * 40))
    with pytest.raises(InvalidArgument, match="page_token"):
        CHECK.get_results(linkage_pb2.GetResultsRequest(job_id="j", page_token="-5"))
    CHECK.get_results(linkage_pb2.GetResultsRequest(job_id="j", page_token="1000"))
    long_path = linkage_pb2.TableSource(path="/tmp/" + "x" * 300 + ".csv")
    with pytest.raises(InvalidArgument, match="too long") as err:
        CHECK.start_job(linkage_pb2.StartJobRequest(left=long_path))
    assert err.value.field == "left.path" and len(str(err.value)) < 250
    with pytest.raises(InvalidArgument, match="NUL"):
        CHECK.start_job(linkage_pb2.StartJobRequest(left=linkage_pb2.TableSource(path="a\0b")))
    for encoding in ("nope", "utf\x008"):
        with pytest.raises(InvalidArgument, match="encoding"):
            src = linkage_pb2.TableSource(path="a", encoding=encoding)
            CHECK.start_job(linkage_pb2.StartJobRequest(left=src))
    req = linkage_pb2.StartJobRequest()
    req.left.inline.rows.add().CopyFrom(to_object({"id": "1", "x": math.nan}))
    with pytest.raises(InvalidArgument, match=r"left.inline.rows\[0\]\['x'\]"):
        CHECK.start_job(req)
    match = linkage_pb2.MatchRequest(job_id="j")
    with pytest.raises(InvalidArgument, match="record is required"):
        CHECK.match(match)
    match.record.CopyFrom(to_object({"name": -math.inf}))
    with pytest.raises(InvalidArgument, match="finite"):
        CHECK.match(match)


def test_json_values_must_be_set() -> None:
    req = points_pb2.SearchRequest(collection="c")
    req.filter.must.add(key="n").equals.SetInParent()  # a JsonValue with no kind
    with pytest.raises(InvalidArgument, match="nothing set") as err:
        CHECK.search(req)
    assert err.value.field == "filter.must[0].equals"
    record = upsert(text="t", payload={"a": 1})
    record.records[0].payload.fields["b"].SetInParent()
    with pytest.raises(InvalidArgument, match="nothing set"):
        CHECK.upsert(record)


def test_integers_are_exact_and_never_rejected() -> None:
    CHECK.upsert(upsert(text="t", payload={"big": 2**63 - 1, "small": -(2**63), "n": [1, 2]}))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_in_typed_options(bad: float) -> None:
    """Typed messages carry doubles too: each is checked, anywhere in the message."""
    options = index_options_to_proto("partitioned", {"split_limit": 64})
    options.partitioned.eps = bad
    request = collections_pb2.CreateCollectionRequest(name="c", dimensions=4)
    request.index_options.CopyFrom(options)
    with pytest.raises(InvalidArgument, match="finite") as err:
        CHECK.create_collection(request)
    assert err.value.field == "index_options.partitioned.eps"
    spec = spec_to_proto({"fields": [{"name": "a"}, {"name": "b", "scale": 1.0}]})
    spec.fields[1].scale = bad
    with pytest.raises(InvalidArgument, match="finite") as err:
        CHECK.start_job(linkage_pb2.StartJobRequest(spec=spec))
    assert err.value.field == "spec.fields[1].scale"
    spec = spec_to_proto({"encoder": {"kind": "hf-text"}})
    spec.encoder.fields["temperature"].double_value = bad
    with pytest.raises(InvalidArgument, match="finite") as err:
        CHECK.start_job(linkage_pb2.StartJobRequest(spec=spec))
    assert err.value.field == "spec.encoder['temperature']"
