"""SIGKILL the real server under concurrent writers and compare what survives with the ledger.

Flat and partitioned indexes, SQLite and PostgreSQL, 3 kills each (12 in all); bench/crash.py
runs the same harness with many more. See tests/e2e/crash_harness.py for what is counted.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location(
    "crash_harness", Path(__file__).with_name("crash_harness.py")
)
harness = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["crash_harness"] = harness
_spec.loader.exec_module(harness)  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["flat", "partitioned"])
@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigkill_loses_tears_resurrects_and_invents_nothing(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str, db: str
) -> None:
    url = request.getfixturevalue("pg_url") if db == "postgres" else ""
    config = harness.CrashConfig(kind=kind, database_url=url, kills=3, seed=len(kind) + len(db))
    report = harness.run_crashes(tmp_path / "data", config)
    assert report.kills == 3
    assert report.acknowledged > 0
    assert report.violations == 0 and not report.problems, "\n".join(report.problems[:20])
    assert report.replay_seconds_max is not None
