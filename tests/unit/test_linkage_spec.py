"""LinkageSpec: validation reports every mistake at once; JSON round-trip."""

from __future__ import annotations

import pytest
from veclink.linkage import FieldSpec, LinkageSpec

from veclink.errors import InvalidArgument


def test_defaults_are_valid_and_round_trip_through_json() -> None:
    spec = LinkageSpec(fields=(FieldSpec(name="title", type="text"),), left_id="id")
    again = LinkageSpec.from_json(spec.to_json())
    assert again == spec
    assert LinkageSpec.from_dict({}) == LinkageSpec()


def test_nested_dicts_become_dataclasses() -> None:
    spec = LinkageSpec.from_dict(
        {
            "fields": [{"name": "name", "type": "text"}, {"name": "price", "type": "number"}],
            "blocking": {"k": 5, "keys": [["price"]]},
            "llm_judge": {"model": "/models/tiny"},
        }
    )
    assert spec.fields[1].type == "number"
    assert spec.blocking.k == 5 and spec.blocking.keys == (("price",),)
    assert spec.llm_judge is not None and spec.llm_judge.model == "/models/tiny"


def test_every_mistake_is_reported_at_once() -> None:
    bad = {
        "fields": [
            {"name": "title", "type": "texty"},
            {"name": "title"},
            {"nme": "x"},
        ],
        "precision": 1.5,
        "blocking": {"k": 0, "keys": [["nope"]], "lexical_weight": "high"},
        "reference": "middle",
        "colour": "blue",
        "one_to_one": "yes",
        "assignment": 3,
    }
    with pytest.raises(InvalidArgument) as info:
        LinkageSpec.from_dict(bad)
    msg = str(info.value)
    for expected in (
        "spec.fields[2].nme: unknown key",
        "spec.fields[2].name: required",
        "spec.blocking.lexical_weight: must be a number",
        "spec.colour: unknown key",
        "spec.one_to_one: unknown key",
        "spec.assignment: must be a string",
    ):
        assert expected in msg, msg
    assert info.value.field == "spec"


def test_value_problems_are_reported_together() -> None:
    bad = {
        "fields": [{"name": "title", "type": "texty"}, {"name": "title"}],
        "precision": 1.5,
        "blocking": {"k": 0, "keys": [["nope"]]},
        "reference": "middle",
    }
    with pytest.raises(InvalidArgument) as info:
        LinkageSpec.from_dict(bad)
    msg = str(info.value)
    for expected in (
        "spec.fields[0].type: must be one of text, string",
        "name 'title' is used more than once",
        "spec.precision: must be a number in [0, 1], got 1.5",
        "spec.blocking.k: must be an integer >= 1, got 0",
        "spec.blocking.keys[0]: 'nope' is not a field",
        "spec.reference: must be one of auto, right, left, both, none, got 'middle'",
    ):
        assert expected in msg, msg


def test_invalid_json_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        LinkageSpec.from_json("{fields: }")


def test_field_columns_default_to_the_name() -> None:
    f = FieldSpec(name="name")
    assert (f.left_column, f.right_column) == ("name", "name")
    g = FieldSpec(name="maker", left="brand", right="manufacturer")
    assert (g.left_column, g.right_column) == ("brand", "manufacturer")


def test_encoder_and_index_kind_are_checked_with_the_rest() -> None:
    with pytest.raises(InvalidArgument) as info:
        LinkageSpec.from_dict(
            {"encoder": {"kind": "nope"}, "blocking": {"index_kind": "magic"}, "precision": -0.5}
        )
    msg = str(info.value)
    assert "spec.encoder: unknown encoder kind 'nope'" in msg
    assert "spec.blocking.index_kind: must be one of flat, partitioned, got 'magic'" in msg
    assert "spec.precision" in msg


def test_legacy_one_to_one_flag_maps_to_an_assignment() -> None:
    assert LinkageSpec.from_dict({"one_to_one": False}).assignment == "many_to_one"
    assert LinkageSpec.from_dict({"one_to_one": True}).assignment == "one_to_one"
    assert LinkageSpec.from_dict({}).assignment == "auto"
    assert LinkageSpec.from_dict({"precision": 0}).precision == 0.0
