"""The veclink command against a live server: vector search, "no results", row errors at
the file's line, --quiet upserts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from veclink.cli.main import main

from tests.fixtures.server import RunningServer, server_settings


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    running = RunningServer(server_settings(tmp_path_factory.mktemp("data")))
    yield running.address
    running.stop()


def cli(capsys: pytest.CaptureFixture[str], address: str, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--server", address])
    out, err = capsys.readouterr()
    return code, out, err


def test_vectors_only_collection_from_the_cli(
    capsys: pytest.CaptureFixture[str], address: str, tmp_path: Path
) -> None:
    assert cli(capsys, address, "collection", "create", "vecs", "--dim", "3")[0] == 0
    records = tmp_path / "vecs.jsonl"
    records.write_text(
        '{"id": "x", "vector": [1, 0, 0], "colour": "red"}\n'
        '{"id": "y", "vector": [0, 1, 0], "colour": "blue"}\n'
        '{"id": "z", "vector": [0, 0, 1], "colour": "red"}\n'
    )
    code, out, err = cli(capsys, address, "upsert", "vecs", str(records), "--quiet")
    assert code == 0 and "upserted 3 records" in out and err == ""  # --quiet: no bar

    code, out, _ = cli(capsys, address, "search", "vecs", "--vector", "[0.9, 0.1, 0]", "--json")
    hits = json.loads(out)
    assert code == 0 and [h["id"] for h in hits] == ["x", "y", "z"]
    assert hits[0]["payload"] == {"colour": "red"}

    queries = tmp_path / "q.npy"
    np.save(queries, np.eye(3, dtype=np.float32))
    code, out, _ = cli(
        capsys, address, "search", "vecs", "--vector", str(queries), "--row", "2", "-k", "1"
    )
    assert code == 0 and out.split()[1:3] == ["1.0000", "z"]

    code, out, _ = cli(
        capsys, address, "search", "vecs", "--vector", "[1, 0, 0]", "--filter", "colour=green"
    )
    assert code == 0 and out.strip() == "no results"
    code, out, _ = cli(
        capsys, address, "search", "vecs", "--vector", "[1,0,0]", "--filter", "colour=green",
        "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out) == []


def test_row_errors_name_the_file_line(
    capsys: pytest.CaptureFixture[str], address: str, tmp_path: Path
) -> None:
    assert cli(capsys, address, "collection", "create", "lines", "--dim", "2")[0] == 0
    records = tmp_path / "lines.jsonl"
    records.write_text(
        '{"id": "a", "vector": [1, 0]}\n'
        '{"id": "b", "vector": [0, 1]}\n'
        "\n"
        '{"id": "c", "vector": [1, 1]}\n'
        '{"id": "d", "vector": [1, 2, 3]}\n'
    )
    code, out, err = cli(
        capsys, address, "upsert", "lines", str(records), "--batch-size", "2", "--quiet"
    )
    assert code == 1 and out == ""
    assert f"{records}:5: record.vector has dimension 3" in err
    assert "the 2 records before line 4 were stored" in err and "batch 1" not in err
    code, out, _ = cli(capsys, address, "collection", "get", "lines", "--json")
    assert json.loads(out)["count"] == 2


def test_numbers_keep_their_type_through_the_cli(
    capsys: pytest.CaptureFixture[str], address: str, tmp_path: Path
) -> None:
    """The help's own --index-options example works, and integers come back as integers:
    index statistics and payloads (2^53 + 1 exactly), floats as floats."""
    code, out, err = cli(
        capsys, address, "collection", "create", "typed", "--dim", "2",
        "--index-options", '{"split_limit": 512}', "--json",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    assert created["index_kind"] == "partitioned" and created["dimensions"] == 2
    records = tmp_path / "typed.jsonl"
    records.write_text(
        '{"id": "a", "vector": [1, 0], "stars": 5, "price": 5.0, "sku": 9007199254740993}\n'
    )
    assert cli(capsys, address, "upsert", "typed", str(records), "--quiet")[0] == 0
    code, out, _ = cli(capsys, address, "collection", "get", "typed", "--json")
    stats = json.loads(out)["index_stats"]
    assert code == 0 and stats["dim"] == 2 and type(stats["dim"]) is int
    assert stats["options"]["split_limit"] == 512 and type(stats["options"]["split_limit"]) is int
    code, out, _ = cli(capsys, address, "get", "typed", "a")
    payload = json.loads(out)["records"][0]["payload"]
    assert payload == {"stars": 5, "price": 5.0, "sku": 9007199254740993}
    assert [type(payload[k]) for k in ("stars", "price", "sku")] == [int, float, int]
    code, out, err = cli(
        capsys, address, "collection", "create", "typed2", "--dim", "2",
        "--index-options", '{"split_limit": "big"}',
    )  # fmt: skip
    assert code == 1 and "index_options.split_limit: must be an integer, got 'big'" in err
