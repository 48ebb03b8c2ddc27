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
