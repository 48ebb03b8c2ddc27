"""One type policy for every config: settings, encoder specs, index options, linkage specs."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from veclink.encoders import spec_from_dict
from veclink.encoders.specs import HFTextSpec
from veclink.index import PartitionedIndex
from veclink.linkage import LinkageSpec
from veclink.service.settings import load_settings

from veclink.errors import InvalidArgument
from veclink.validation import (
    Problems,
    build,
    check_choice,
    check_int,
    check_number,
    check_path,
    field_problems,
    quote,
)


def test_integers_refuse_floats_and_bools() -> None:
    assert check_int(64, "batch_size", ge=1) == 64
    for bad in (64.0, True, False, "64", None):
        with pytest.raises(InvalidArgument) as info:
            check_int(bad, "batch_size", ge=1)
        assert str(info.value) == f"batch_size: must be an integer >= 1, got {bad!r}"
        assert info.value.field == "batch_size"


def test_numbers_refuse_bools_nan_and_infinity() -> None:
    assert check_number(1, "alpha") == 1.0 and isinstance(check_number(1, "alpha"), float)
    assert check_number(0.5, "alpha", ge=0, le=1) == 0.5
    for bad in (math.nan, math.inf, -math.inf, True, "0.5"):
        with pytest.raises(InvalidArgument, match="alpha: must be a number in"):
            check_number(bad, "alpha", ge=0, le=1)


@pytest.mark.parametrize(
    ("bounds", "good", "bad", "phrase"),
    [
        ({"ge": 1}, 1, 0, ">= 1"),
        ({"gt": 0}, 0.001, 0, "> 0"),
        ({"le": 16}, 16, 16.5, "<= 16"),
        ({"lt": 1}, 0.99, 1, "< 1"),
        ({"ge": 0, "le": 1}, 1, 1.01, "in [0, 1]"),
        ({"gt": 0, "le": 1}, 1, 0, "in (0, 1]"),
        ({"ge": 0, "lt": 1}, 0, 1, "in [0, 1)"),
    ],
)
def test_ranges_are_inclusive_or_exclusive_as_named(
    bounds: dict[str, float], good: float, bad: float, phrase: str
) -> None:
    assert check_number(good, "x", **bounds) == good
    with pytest.raises(
        InvalidArgument, match=rf"x: must be a number {re.escape(phrase)}, got {bad}"
    ):
        check_number(bad, "x", **bounds)


def test_choices_and_paths() -> None:
    assert check_choice("fp16", "dtype", ("fp32", "fp16")) == "fp16"
    with pytest.raises(InvalidArgument, match="dtype: must be one of fp32, fp16, got 'int4'"):
        check_choice("int4", "dtype", ("fp32", "fp16"))
    with pytest.raises(InvalidArgument, match="dtype: must be one of"):
        check_choice(["fp32"], "dtype", ("fp32",))
    assert check_path("/srv/tables", "dir") == "/srv/tables"
    with pytest.raises(InvalidArgument, match="dir: contains a NUL character"):
        check_path("/srv/\x00", "dir")
    with pytest.raises(InvalidArgument, match="too long for a file path"):
        check_path("/" + "a" * 300, "dir")


def test_values_are_quoted_by_a_short_prefix() -> None:
    assert quote("abc") == "'abc'"
    long = "x" * 500
    assert quote(long) == f"{'x' * 64!r}... (500 characters)"
    with pytest.raises(InvalidArgument) as info:
        check_choice(long, "kind", ("a", "b"))
    assert len(str(info.value)) < 150 and "(500 characters)" in str(info.value)
    assert quote(list(range(1000))).endswith("...") and len(quote(list(range(1000)))) == 67


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Inner:
    k: int = 20
    weight: float = 0.5


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Outer:
    name: str
    keys: tuple[str, ...] = ()
    inner: _Inner = _Inner()
    scale: float | None = None
    on: bool = True


def test_build_reports_every_problem_with_its_path() -> None:
    problems = Problems()
    built = build(
        _Outer,
        {"keys": ["a", 3], "inner": {"k": 30.0, "weight": "high", "x": 1}, "on": 1, "extra": 2},
        "cfg",
        problems,
    )
    assert built is None
    assert problems.items == [
        "cfg.keys[1]: must be a string, got 3",
        "cfg.inner.k: must be an integer, got 30.0",
        "cfg.inner.weight: must be a number, got 'high'",
        "cfg.inner.x: unknown key (valid: k, weight)",
        "cfg.on: must be true or false, got 1",
        "cfg.extra: unknown key (valid: name, keys, inner, scale, on)",
        "cfg.name: required",
    ]
    ok = Problems()
    assert build(_Outer, {"name": "n", "keys": ["a"], "inner": {"weight": 1}}, "cfg", ok) == (
        _Outer(name="n", keys=("a",), inner=_Inner(weight=1.0))
    )
    assert not ok
    assert field_problems(_Outer(name="n", inner=_Inner(k=True)), "cfg") == [  # type: ignore[arg-type]
        "cfg.inner.k: must be an integer, got True"
    ]
    with pytest.raises(InvalidArgument, match="^cfg: cfg.name: required$"):
        p = Problems()
        build(_Outer, {}, "cfg", p)
        p.raise_if_any("cfg", "cfg")


# ------------------------------------------------------------------ every config, one policy


def test_encoder_batch_size_of_64_0_is_refused_before_any_model_loads() -> None:
    with pytest.raises(InvalidArgument) as info:
        spec_from_dict({"kind": "hf-text", "batch_size": 64.0})
    assert "spec.batch_size: must be an integer, got 64.0" in str(info.value)
    for bad in ({"normalize": 1}, {"max_length": True}, {"batch_size": "64"}):
        with pytest.raises(InvalidArgument, match="spec\\."):
            spec_from_dict({"kind": "hf-text", **bad})
    with pytest.raises(InvalidArgument, match="spec.alpha: must be a number, got nan"):
        spec_from_dict({"kind": "moe-router", "model": "m", "alpha": math.nan})
    # a spec built in Python is held to the same policy
    with pytest.raises(InvalidArgument, match="spec.batch_size: must be an integer, got 64.0"):
        spec_from_dict(HFTextSpec(batch_size=64.0))  # type: ignore[arg-type]
    assert spec_from_dict({"kind": "hf-text", "batch_size": 64}).batch_size == 64  # type: ignore[attr-defined]


def test_encoder_specs_share_the_batch_dtype_and_device_checks() -> None:
    for kind, extra in (
        ("hf-text", {}),
        ("clip", {}),
        ("llm-text", {"model": "m"}),
        ("moe-router", {"model": "m"}),
        ("llm2clip", {"checkpoint": "/c"}),
    ):
        with pytest.raises(InvalidArgument) as info:
            spec_from_dict(
                {"kind": kind, **extra, "batch_size": 0, "dtype": "fp8", "device": "gpu"}
            )
        msg = str(info.value)
        assert "spec.batch_size: must be an integer >= 1, got 0" in msg, kind
        assert "spec.dtype: must be one of fp32, fp16, bf16, got 'fp8'" in msg, kind
        assert "spec.device: must be one of cpu, cuda, auto or cuda:N, got 'gpu'" in msg, kind
    assert spec_from_dict({"kind": "clip", "device": "cuda:1"}).device == "cuda:1"  # type: ignore[attr-defined]


def test_settings_follow_the_same_policy() -> None:
    with pytest.raises(InvalidArgument) as info:
        load_settings(
            env={},
            overrides={
                "server": {"port": 50051.0, "workers": True, "grace_seconds": math.nan},
                "limits": {"max_k": 70000.5, "max_vector_norm": math.inf},
            },
        )
    msg = str(info.value)
    for part in (
        "server.port: must be an integer, got 50051.0",
        "server.workers: must be an integer, got True",
        "server.grace_seconds: must be a number, got nan",
        "limits.max_k: must be an integer, got 70000.5",
        "limits.max_vector_norm: must be a number, got inf",
    ):
        assert part in msg, msg
    with pytest.raises(InvalidArgument, match="server.port: must be an integer in"):
        load_settings(env={"VECLINK__SERVER__PORT": "70000"})
    with pytest.raises(InvalidArgument, match="server.workers: must be an integer >= 1"):
        load_settings(env={"VECLINK__SERVER__WORKERS": "0"})


def test_environment_text_is_read_as_the_type_of_its_setting() -> None:
    s = load_settings(
        env={
            "VECLINK__SERVER__PORT": "6000",
            "VECLINK__SERVER__GRACE_SECONDS": "2",
            "VECLINK__SERVER__METRICS": "false",
            "VECLINK__STORAGE__DATA_DIR": "2024",  # a string setting keeps its text
            "VECLINK__AUTH__READ_KEYS": "12345",  # one key that looks like a number
            "VECLINK__AUTH__WRITE_KEYS": '["k1", "k2"]',
            "VECLINK__MODELS__TINY__KIND": "hf-text",
            "VECLINK__MODELS__TINY__BATCH_SIZE": "8",
            "VECLINK__DEFAULT_MODEL": "tiny",
        }
    )
    assert s.server.port == 6000 and s.server.grace_seconds == 2.0
    assert s.server.metrics is False
    assert s.storage.data_dir == "2024"
    assert s.auth.read_keys == ("12345",) and s.auth.write_keys == ("k1", "k2")
    assert s.models["tiny"] == {"kind": "hf-text", "batch_size": 8}
    with pytest.raises(InvalidArgument, match="server.port: must be an integer, got 6000.0"):
        load_settings(env={"VECLINK__SERVER__PORT": "6000.0"})


def test_index_options_follow_the_same_policy() -> None:
    with pytest.raises(InvalidArgument) as info:
        PartitionedIndex(
            4, split_limit=True, nprobe=64.0, refresh=math.nan, background=1, device="gpu"
        )
    msg = str(info.value)
    for part in (
        "split_limit: must be an integer >= 8, got True",
        "nprobe: must be an integer >= 1, got 64.0",
        "refresh: must be a number in [0, 16], got nan",
        "background: must be true or false, got 1",
        "device: must be one of auto, numpy, cpu, cuda or cuda:N, got 'gpu'",
    ):
        assert part in msg, msg
    assert info.value.field == "index_options"
    index = PartitionedIndex(4, split_limit=64, merge_limit=8, background=False)
    assert index.options["split_limit"] == 64
    index.close()


def test_linkage_specs_follow_the_same_policy() -> None:
    with pytest.raises(InvalidArgument) as info:
        LinkageSpec.from_dict(
            {"blocking": {"k": 30.0, "margin": math.inf}, "precision": True, "seed": 1.5}
        )
    msg = str(info.value)
    for part in (
        "spec.blocking.k: must be an integer, got 30.0",
        "spec.blocking.margin: must be a number, got inf",
        "spec.precision: must be a number, got True",
        "spec.seed: must be an integer, got 1.5",
    ):
        assert part in msg, msg
    assert LinkageSpec.from_dict({"blocking": {"k": 30}}).blocking.k == 30


def test_the_validation_and_table_modules_import_nothing_heavy() -> None:
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "import veclink.validation, veclink.tabular\n"
        "print(json.dumps([m for m in ('torch', 'numpy', 'sqlalchemy', 'grpc') "
        "if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
