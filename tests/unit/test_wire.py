"""The wire contract (veclink.wire): exact JSON integers, typed options, and every
conversion's two directions agreeing (domain -> proto -> domain gives the same value)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import types
import typing

import numpy as np
import pytest
from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from veclink.v1 import collections_pb2, common_pb2, linkage_pb2

from veclink.errors import InvalidArgument
from veclink.wire import (
    CollectionInfo,
    Condition,
    Embeddings,
    EmbedQuery,
    EntityAssignment,
    EntityCandidate,
    Filter,
    Hit,
    Job,
    MatchedPair,
    MatchResult,
    ModelInfo,
    NewCollection,
    NewJob,
    RecordIn,
    SearchQuery,
    StoredRecord,
    TableSource,
    convert,
)
from veclink.wire.values import from_object, from_value, to_object, to_value

BIG = 2**53 + 1  # the first integer a double cannot hold


# ----------------------------------------------------------------------- JSON values


@pytest.mark.parametrize(
    "value",
    [
        0,
        5,
        -7,
        BIG,
        12345678901234567,
        2**63 - 1,
        -(2**63),
        5.0,
        0.1,
        -0.0,
        True,
        False,
        None,
        "",
        "text",
        [],
        {},
        [1, 2.5, "x", None, [True, {}]],
        {"stars": 5, "price": 5.0, "sku": BIG, "tags": ["a", 1], "nested": {"n": -1}},
    ],
)
def test_json_values_keep_their_type(value: object) -> None:
    back = from_value(common_pb2.JsonValue.FromString(to_value(value).SerializeToString()))
    assert back == value and _types(back) == _types(value)


def _types(value: object) -> object:
    """The value's structure with every leaf replaced by its type (5 and 5.0 differ)."""
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


def test_json_numpy_scalars_and_arrays_become_python_values() -> None:
    got = from_object(to_object({"i": np.int64(3), "f": np.float32(0.5), "a": np.arange(2)}))
    assert got == {"i": 3, "f": 0.5, "a": [0, 1]} and type(got["i"]) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"n": 2**63}, r"payload\['n'\] is 9223372036854775808, outside the signed 64-bit"),
        ({"n": [1, -(2**64)]}, r"payload\['n'\]\[1\] is .* outside"),
        ({"b": b"bytes"}, r"payload\['b'\] is a bytes, which is not a JSON value"),
        ({"s": {1, 2}}, "set, which is not a JSON value"),
        ({1: "x"}, "has the key 1; JSON object keys are strings"),
    ],
)
def test_json_rejects_what_json_cannot_hold(value: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        to_object(value, "payload")


def test_a_struct_on_the_wire_reads_as_a_json_object() -> None:
    """JsonValue keeps google.protobuf.Value's field numbers: old clients' bytes still parse."""
    old = struct_pb2.Struct()
    old.update({"a": 1, "b": "x", "c": [True, None], "d": {"e": 2.5}})
    got = from_object(common_pb2.JsonObject.FromString(old.SerializeToString()))
    assert got == {"a": 1.0, "b": "x", "c": [True, None], "d": {"e": 2.5}}


# ----------------------------------------------------------------------- index options


def test_index_options_are_typed_and_exact() -> None:
    msg = convert.index_options_to_proto("partitioned", {"split_limit": 512, "eps": 0})
    assert msg.partitioned.split_limit == 512 and msg.partitioned.HasField("eps")
    kind, options = convert.index_options_from_proto(
        collections_pb2.IndexOptions.FromString(msg.SerializeToString())
    )
    assert (kind, options) == ("partitioned", {"split_limit": 512, "eps": 0.0})
    assert type(options["split_limit"]) is int and type(options["eps"]) is float


def test_index_options_without_a_kind_are_a_partitioned_index() -> None:
    req = convert.new_collection_to_proto(
        NewCollection(name="c", dim=4, index_options={"split_limit": 128, "nprobe": 64})
    )
    new = convert.new_collection_from_proto(req)
    assert new.index_kind == "partitioned"
    assert new.index_options == {"split_limit": 128, "nprobe": 64}


def test_index_options_report_every_wrong_key_and_type() -> None:
    with pytest.raises(InvalidArgument) as err:
        convert.index_options_to_proto(
            "partitioned", {"split_limit": 512.0, "colour": 1, "background": "yes"}
        )
    text = str(err.value)
    assert err.value.field == "index_options"
    assert "index_options.split_limit: must be an integer, got 512.0" in text
    assert "index_options.colour: unknown key (valid: split_limit, merge_limit" in text
    assert "index_options.background: must be true or false, got 'yes'" in text
    with pytest.raises(InvalidArgument, match="a flat index takes no options"):
        convert.index_options_to_proto("flat", {"split_limit": 8})
    with pytest.raises(InvalidArgument, match="finite"):
        convert.index_options_to_proto("partitioned", {"refresh": math.inf})


def test_index_options_for_another_kind_are_rejected_by_the_server() -> None:
    req = collections_pb2.CreateCollectionRequest(name="c", index_kind=common_pb2.INDEX_KIND_FLAT)
    req.index_options.partitioned.split_limit = 64
    with pytest.raises(InvalidArgument, match="for a partitioned index but index_kind is flat"):
        convert.new_collection_from_proto(req)


def test_partitioned_options_message_covers_the_index_defaults() -> None:
    from veclink.index.partitioned import DEFAULTS

    fields = collections_pb2.PartitionedIndexOptions.DESCRIPTOR.fields_by_name
    assert set(fields) == set(DEFAULTS)
    msg = convert.index_options_to_proto(
        "partitioned", {k: v for k, v in DEFAULTS.items() if v is not None}
    )
    assert convert.index_options_from_proto(msg)[1] == {
        k: v for k, v in DEFAULTS.items() if v is not None
    }


# ----------------------------------------------------------------------- linkage specs


def test_spec_integers_stay_integers() -> None:
    spec = {
        "blocking": {"k": 30, "keys": [["zip"], ["city", "name"]], "margin": 0},
        "fields": [{"name": "zip", "type": "code", "max_chars": 12}, {"name": "city"}],
        "encoder": {"kind": "hf-text", "max_length": 128, "backend": "auto"},
        "seed": BIG,
        "threshold": None,
    }
    wire = linkage_pb2.LinkageSpec.FromString(convert.spec_to_proto(spec).SerializeToString())
    back = convert.spec_from_proto(wire)
    assert back["blocking"] == {"k": 30, "keys": [["zip"], ["city", "name"]], "margin": 0.0}
    assert type(back["blocking"]["k"]) is int and back["seed"] == BIG
    assert type(back["encoder"]["max_length"]) is int
    assert "threshold" not in back  # None: unset, the default


def test_spec_problems_are_all_reported_with_their_path() -> None:
    with pytest.raises(InvalidArgument) as err:
        convert.spec_to_proto(
            {
                "blocking": {"k": 30.0, "keys": ["zip"]},
                "fields": [{"name": "a", "embed": 1}],
                "precision": "high",
                "colour": "red",
            }
        )
    text = str(err.value)
    assert text.startswith("invalid linkage spec: ") and err.value.field == "spec"
    for problem in (
        "spec.blocking.k: must be an integer, got 30.0",
        "spec.blocking.keys[0]: must be a list of strings, got 'zip'",
        "spec.fields[0].embed: must be true or false, got 1",
        "spec.precision: must be a number, got 'high'",
        "spec.colour: unknown key",
    ):
        assert problem in text


def test_spec_message_mirrors_the_linkage_spec_dataclasses() -> None:
    """Every LinkageSpec field (recursively) has a proto field of the matching type."""
    from veclink.linkage.spec import LinkageSpec

    def check(cls: type, desc: typing.Any, path: str) -> None:
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(desc.fields_by_name) == names, path
        for name in names:
            _check_field(hints[name], desc.fields_by_name[name], f"{path}.{name}", check)

    check(LinkageSpec, linkage_pb2.LinkageSpec.DESCRIPTOR, "spec")


def _check_field(tp: typing.Any, fd: FieldDescriptor, path: str, check: typing.Any) -> None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # X | None: X
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    origin = typing.get_origin(tp)
    if origin is tuple:
        assert fd.is_repeated, path
        item = typing.get_args(tp)[0]
        if typing.get_origin(item) is tuple:  # blocking keys: a message of strings
            assert fd.message_type.full_name == "veclink.v1.BlockingKey", path
        else:
            check(item, fd.message_type, path)
        return
    if origin is dict:
        assert fd.message_type.full_name == "veclink.v1.JsonObject", path
        return
    if dataclasses.is_dataclass(tp):
        check(tp, fd.message_type, path)
        return
    expected = {
        int: FieldDescriptor.CPPTYPE_INT64,
        float: FieldDescriptor.CPPTYPE_DOUBLE,
        str: FieldDescriptor.CPPTYPE_STRING,
        bool: FieldDescriptor.CPPTYPE_BOOL,
    }
    assert fd.cpp_type == expected[tp], path


def test_every_spec_round_trips_through_the_wire_to_the_same_spec() -> None:
    from veclink.linkage.spec import LinkageSpec

    specs = [
        LinkageSpec(),
        LinkageSpec.from_dict(
            {
                "fields": [
                    {"name": "title", "type": "text", "max_chars": 200},
                    {"name": "year", "left": "y", "right": "yr", "type": "number", "scale": 2},
                ],
                "left_id": "lid",
                "right_id": "rid",
                "blocking": {"k": 30, "min_k": 2, "keys": [["year"]], "index_kind": "partitioned"},
                "threshold": 0.5,
                "assignment": "many_to_one",
                "llm_judge": {"model": "/models/judge", "max_pairs": 50},
                "seed": BIG,
                "memory_budget_mb": 512,
            }
        ),
    ]
    for spec in specs:
        wire = convert.spec_to_proto(spec.to_dict()).SerializeToString()
        back = convert.spec_from_proto(linkage_pb2.LinkageSpec.FromString(wire))
        assert LinkageSpec.from_dict(back) == spec


# ----------------------------------------------------------------------- round trips

NOW = dt.datetime(2025, 5, 6, 7, 8, 9, 123000)


def _same(a: object, b: object) -> None:
    """Dataclasses equal field by field (numpy vectors compared by value)."""
    for f in dataclasses.fields(a):  # type: ignore[arg-type]
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y and _types(x) == _types(y), f.name


def test_collections_round_trip() -> None:
    info = CollectionInfo(
        name="docs",
        model="m",
        dim=384,
        metric="l2",
        index_kind="partitioned",
        index_options={"split_limit": 64},
        count=BIG,
        created_at=NOW,
        index_stats={"dim": 384, "size_mean": 12.5, "options": {"eps": None}},
    )
    _same(convert.collection_from_proto(convert.collection_to_proto(info)), info)
    new = NewCollection(name="v", dim=4, metric="ip", index_kind="flat")
    _same(convert.new_collection_from_proto(convert.new_collection_to_proto(new)), new)
    with pytest.raises(InvalidArgument, match="metric must be one of cosine, ip, l2"):
        convert.new_collection_to_proto(NewCollection(name="v", dim=4, metric="manhattan"))


def test_points_round_trip() -> None:
    vec = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    record = RecordIn(id="r", text="t", image=b"\x89PNG", vector=vec, payload={"n": BIG})
    _same(convert.record_from_proto(convert.record_to_proto(record)), record)
    stored = StoredRecord(id="s", text="t", payload={"stars": 5, "price": 5.0}, vector=vec)
    _same(convert.stored_record_from_proto(convert.stored_record_to_proto(stored)), stored)
    hit = Hit(id="h", score=0.25, text=None, payload={"a": [1, 2]}, vector=None)
    _same(convert.hit_from_proto(convert.hit_to_proto(hit)), hit)
    query = SearchQuery(
        collection="c",
        k=3,
        vector=vec,
        filter=Filter(
            must=(
                Condition(key="sku", op="equals", value=BIG),
                Condition(key="tag", op="any_of", value=["a", 2, None]),
                Condition(key="n", op="range", gte=1.0, lt=5.5),
            )
        ),
        nprobe=8,
        with_vectors=True,
        instruction="find",
    )
    _same(convert.search_from_proto(convert.search_to_proto(query)), query)
    text = SearchQuery(collection="c", text="a dog")
    _same(convert.search_from_proto(convert.search_to_proto(text)), text)


def test_embeddings_round_trip() -> None:
    query = EmbedQuery(inputs=("a", b"\x89PNG"), model="m", role="document", dimensions=64)
    _same(convert.embed_from_proto(convert.embed_to_proto(query)), query)
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    sent = Embeddings(model="m", precision="float32", dimensions=3, values=vectors)
    got = convert.embeddings_from_proto(convert.embeddings_to_proto(sent))
    assert (got.model, got.precision, got.dimensions, got.scales) == ("m", "float32", 3, None)
    np.testing.assert_array_equal(got.values, vectors)
    for precision in ("int8", "uint8", "binary", "ubinary"):
        query = EmbedQuery(inputs=("a",), precision=precision)
        assert convert.embed_from_proto(convert.embed_to_proto(query)).precision == precision


@pytest.mark.parametrize(
    ("precision", "values", "scales"),
    [
        (
            "int8",
            np.array([[-127, 5, 127], [0, 1, -2]], np.int8),
            np.array([0.5, 2e-3], np.float32),
        ),
        (
            "uint8",
            np.array([[0, 133, 255], [128, 129, 126]], np.uint8),
            np.array([0.5, 2e-3], np.float32),
        ),
        ("binary", np.array([[-128], [127]], np.int8), None),
        ("ubinary", np.array([[0, 7], [255, 128]], np.uint8), None),
    ],
)
def test_quantized_embeddings_round_trip(
    precision: str, values: np.ndarray, scales: np.ndarray | None
) -> None:
    dimensions = values.shape[1] * (8 if "binary" in precision else 1)
    sent = Embeddings(
        model="m", precision=precision, dimensions=dimensions, values=values, scales=scales
    )
    got = convert.embeddings_from_proto(convert.embeddings_to_proto(sent))
    assert got.precision == precision and got.dimensions == dimensions
    assert got.values.dtype == values.dtype
    np.testing.assert_array_equal(got.values, values)
    if scales is None:
        assert got.scales is None
    else:
        np.testing.assert_array_equal(got.scales, scales)


def test_embeddings_to_float32() -> None:
    q = Embeddings(
        model="m",
        precision="int8",
        dimensions=2,
        values=np.array([[127, -64]], np.int8),
        scales=np.array([0.01], np.float32),
    )
    np.testing.assert_allclose(q.to_float32(), [[1.27, -0.64]], rtol=1e-6)
    u = Embeddings(
        model="m",
        precision="uint8",
        dimensions=2,
        values=np.array([[255, 64]], np.uint8),
        scales=np.array([0.01], np.float32),
    )
    np.testing.assert_allclose(u.to_float32(), [[1.27, -0.64]], rtol=1e-6)
    # bits 1010 0000 | 1 (9 dimensions, the last byte padded)
    b = Embeddings(
        model="m",
        precision="ubinary",
        dimensions=9,
        values=np.array([[0b10100000, 0x80]], np.uint8),
    )
    np.testing.assert_array_equal(b.to_float32(), [[1, -1, 1, -1, -1, -1, -1, -1, 1]])
    signed = Embeddings(
        model="m",
        precision="binary",
        dimensions=9,
        values=(b.values.astype(np.int16) - 128).astype(np.int8),
    )
    np.testing.assert_array_equal(signed.to_float32(), b.to_float32())
    model = ModelInfo(
        name="m", dimensions=384, modality="text", spec={"max_length": 128}, is_default=True
    )
    _same(convert.model_info_from_proto(convert.model_info_to_proto(model)), model)


def test_linkage_round_trip() -> None:
    rows = [{"id": BIG, "name": "anna", "age": 30, "score": 0.5, "tags": None}]
    job = NewJob(
        kind="link",
        left=TableSource(rows=rows, id_column="id"),
        right=TableSource(path="/data/r.csv", id_column="rid", encoding="latin-1"),
        spec={"blocking": {"k": 30}},
    )
    back = convert.new_job_from_proto(convert.new_job_to_proto(job))
    assert back == job and type(back.left.rows[0]["id"]) is int  # type: ignore[union-attr]
    sql = NewJob(kind="dedupe", left=TableSource(sql="select 1 as id"))
    assert convert.new_job_from_proto(convert.new_job_to_proto(sql)) == sql
    with pytest.raises(InvalidArgument, match="exactly one of path, rows or sql"):
        convert.new_job_to_proto(NewJob(kind="dedupe", left=TableSource(path="a", sql="b")))
    state = Job(
        job_id="j",
        kind="dedupe",
        state="succeeded",
        stage="done",
        progress=1.0,
        error="",
        metrics={"pairs": 12, "threshold": 0.75, "estimated": {"precision": 0.9}},
        created_at=NOW,
        finished_at=NOW,
    )
    _same(convert.job_from_proto(convert.job_to_proto(state)), state)
    pairs = [MatchedPair("l", "r", 0.5)]
    entities = [EntityAssignment("a", "e1")]
    got = convert.results_from_proto(convert.results_to_proto(pairs, entities, "7"))
    assert got == (pairs, entities, "7")
    result = MatchResult(
        candidates=[EntityCandidate(entity_id="e", record_id="r", score=0.5)],
        assigned_entity_id="e",
    )
    assert convert.match_from_proto(convert.match_to_proto(result)) == result
    request = convert.match_request_to_proto("j", {"id": BIG}, 3, True)
    assert from_object(request.record) == {"id": BIG}


# ----------------------------------------------------------------------- the client


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.upsert("c", [{"id": "a", "vector": ["x"]}]), r"records\[0\]\.vector"),
        (lambda c: c.upsert("c", [{"id": "a", "image": "a.png"}]), r"records\[0\]\.image"),
        (lambda c: c.upsert("c", [{"id": "a", "payload": [1]}]), r"records\[0\]\.payload"),
        (lambda c: c.upsert("c", [{"id": "a", "colour": "red"}]), "unknown keys"),
        (lambda c: c.upsert("c", [{"id": "a", "payload": {"n": 2**64}}]), "64-bit"),
        (
            lambda c: c.start_job("dedupe", [{"id": 1}], spec={"blocking": {"k": 30.0}}),
            "spec.blocking.k: must be an integer, got 30.0",
        ),
        (
            lambda c: c.create_collection("c", dimensions=4, index_options={"nprobe": 1.5}),
            "index_options.nprobe: must be an integer",
        ),
        (lambda c: c.create_collection("c", dimensions=4, metric="manhattan"), "metric"),
        (lambda c: c.search("c", text="x", filter=[("k", 1)]), "filter must be"),
    ],
)
def test_client_rejects_bad_input_before_sending(call: typing.Any, message: str) -> None:
    from veclink.client import Client

    with Client("127.0.0.1:1", timeout=0.5) as c, pytest.raises(InvalidArgument, match=message):
        call(c)  # nothing listens on port 1: an error from the server would be Unavailable
