"""The committed generated modules are exactly what scripts/gen_protos.sh produces."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "gen_protos.sh"), str(tmp_path)], check=True, cwd=ROOT)
    generated = sorted(p.name for p in (tmp_path / "veclink" / "v1").iterdir())
    assert generated, "protoc produced nothing"
    committed = ROOT / "proto" / "veclink" / "v1"
    stale = [
        name
        for name in generated
        if not (committed / name).exists()
        or not filecmp.cmp(tmp_path / "veclink" / "v1" / name, committed / name, shallow=False)
    ]
    assert not stale, f"regenerate with scripts/gen_protos.sh: {stale}"


def test_enums_have_unspecified_zero() -> None:
    from veclink.v1 import common_pb2, linkage_pb2

    for module in (common_pb2, linkage_pb2):
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            zero = enum.values_by_number[0].name
            assert zero.endswith("_UNSPECIFIED"), f"{enum.name} zero value is {zero}"


def test_no_message_carries_a_protobuf_struct() -> None:
    """Struct turns every integer into a double: JSON travels as JsonObject / JsonValue, and
    options and specs as typed messages."""
    from veclink.v1 import collections_pb2, common_pb2, embeddings_pb2, linkage_pb2, points_pb2

    banned = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
    offenders = [
        f"{message.full_name}.{field.name}"
        for module in (common_pb2, collections_pb2, embeddings_pb2, linkage_pb2, points_pb2)
        for message in module.DESCRIPTOR.message_types_by_name.values()
        for field in message.fields
        if field.message_type is not None and field.message_type.full_name in banned
    ]
    assert offenders == []
