"""bench/load.py's core, briefly: 4 clients against a real `veclink serve`, no errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("veclink_bench_load", ROOT / "bench" / "load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "argv",
    [["--clients", "65"], ["--clients", "0"], ["--seconds", "0"], ["--seconds", "4000"]],
)
def test_clients_and_time_are_bounded(load: ModuleType, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        load.main(argv)
    assert stop.value.code == 2  # argparse's usage error, before any server starts


@pytest.mark.slow
def test_four_clients_mix_every_rpc_without_errors(load: ModuleType) -> None:
    config = load.LoadConfig(clients=4, seconds=3, warmup=2, ids_per_client=16)
    report = load.run_load(config)
    table = load.format_report(report, "test")
    assert report.ok, table
    assert set(report.stats) == {name for name, _ in load.MIX}
    for name, stats in report.stats.items():
        assert stats.errors == 0 and stats.latencies_ms, f"{name}: {table}"
    # upserts replace within each client's id pool: the data is bounded
    assert 0 < report.records[load.VECTOR_COLLECTION] <= 4 * 16
    assert 0 < report.records[load.TEXT_COLLECTION] <= 4 * 16
    assert 0 < report.rss_kib["start"] <= report.rss_kib["peak"]
    assert report.rss_kib["end"] <= report.rss_kib["peak"]
    assert "| Search text |" in table and "| Upsert vector |" in table
