"""The veclink command without a server: flags checked, files named with their lines,
optional packages checked before any work, --quiet, an unreachable server explained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from veclink.cli.main import main
from veclink.cli.points import query_vector
from veclink.cli.records import locate_batch_error, numbered_records

from tests.fixtures.server import free_port
from veclink.errors import InvalidArgument


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse rejects a flag
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["upsert", "c", "f.csv", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
        (["search", "c", "q", "-k", "0"], "-k: must be an integer >= 1, got 0"),
        (["search", "c", "q", "-k", "ten"], "-k: must be an integer >= 1, got 'ten'"),
        (["search", "c", "q", "--nprobe", "-1"], "--nprobe: must be an integer >= 0"),
        (["embed", "x", "--dimensions", "-5"], "--dimensions: must be an integer >= 0"),
        (["collection", "create", "c", "--dim", "0"], "--dim: must be an integer >= 1"),
        (["collection", "create", "c", "--index-options", "[1]"], "must be a JSON object"),
        (["collection", "create", "c", "--index-options", "{x"], "not valid JSON"),
        (["train", "clip", "--data", "d", "--out", "o", "--spec", "{}", "--epochs", "0"], ">= 1"),
        (
            ["train", "text-encoder", "--model", "m", "--data", "d", "--out", "o", "--lr", "0"],
            "> 0",
        ),
    ],
)
def test_nonsensical_flags_are_rejected(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and out == ""


def test_unreachable_server_names_the_address(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    for argv in (
        ["search", "c", "q", "--server", address],
        ["collection", "list", "--server", address],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 1
        assert f"cannot reach a veclink server at {address}" in err
        assert "is `veclink serve` running" in err and "UNAVAILABLE" not in err


def test_search_needs_exactly_one_query(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "search", "c", "text", "--vector", "[1, 2]")
    assert code == 1 and "give one of" in err
    code, _, err = run(capsys, "search", "c")
    assert code == 1 and "give one of" in err


def test_query_vector_from_json_and_npy(tmp_path: Path) -> None:
    np.testing.assert_array_equal(query_vector("[1, 2.5, -3]", None), [1, 2.5, -3])
    assert query_vector("[1, 2]", None).dtype == np.float32
    for bad in ("[]", '[1, "a"]', '{"a": 1}', "1,2", "[true]"):
        with pytest.raises(InvalidArgument, match="--vector"):
            query_vector(bad, None)
    one = tmp_path / "one.npy"
    np.save(one, np.array([0.5, 0.25]))
    np.testing.assert_array_equal(query_vector(str(one), None), [0.5, 0.25])
    rows = tmp_path / "rows.npy"
    np.save(rows, np.arange(6, dtype=np.float32).reshape(3, 2))
    np.testing.assert_array_equal(query_vector(str(rows), 2), [4, 5])
    with pytest.raises(InvalidArgument, match=r"holds 3 vectors; pick one with --row \(0..2\)"):
        query_vector(str(rows), None)
    with pytest.raises(InvalidArgument, match="has 3 rows"):
        query_vector(str(rows), 3)
    with pytest.raises(InvalidArgument, match="cannot read"):
        query_vector(str(tmp_path / "missing.npy"), None)
    with pytest.raises(InvalidArgument, match="--row goes with a .npy"):
        query_vector("[1, 2]", 0)


def test_records_file_errors_show_header_and_line(tmp_path: Path) -> None:
    csv_file = tmp_path / "r.csv"
    csv_file.write_text("name,text\nx,y\n")
    with pytest.raises(InvalidArgument) as info:
        list(numbered_records(csv_file))
    assert f"{csv_file}:1" in str(info.value) and "the header is 'name,text'" in str(info.value)
    csv_file.write_text('id,text\na,"two\nlines"\nb,ok,extra\n')
    with pytest.raises(InvalidArgument, match=rf"{csv_file}:4: 3 values for the 2 columns"):
        list(numbered_records(csv_file))
    csv_file.write_text('id,text,n\na,"two\nlines",1\n\nb,three,2.5\n')
    assert [(line, r["id"], r["payload"]) for line, r in numbered_records(csv_file)] == [
        (2, "a", {"n": 1}),
        (5, "b", {"n": 2.5}),
    ]
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text('{"id": "a", "text": "x"}\n\n{"text": "no id"}\n')
    with pytest.raises(InvalidArgument, match=rf"{jsonl}:3: .*'id' \(got keys text\)"):
        list(numbered_records(jsonl))


def test_server_batch_errors_point_at_the_file_line() -> None:
    lines = [[2, 3], [5, 9]]
    msg = "INVALID_ARGUMENT: batch 1 (after 2 records stored): records[1].vector has dimension 2"
    assert locate_batch_error(msg, Path("f.jsonl"), lines) == (
        "INVALID_ARGUMENT: f.jsonl:9: record.vector has dimension 2 "
        "(the 2 records before line 5 were stored)"
    )
    first = "batch 0 (after 0 records stored): records[0].id is empty"
    assert locate_batch_error(first, Path("f"), lines) == (
        "f:2: record.id is empty (nothing was stored)"
    )
    assert locate_batch_error("NOT_FOUND: no collection", Path("f"), lines) == (
        "NOT_FOUND: no collection"
    )


def test_optional_packages_checked_before_the_job(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import veclink.cli.common as common
    from veclink.linkage import pipeline

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the job started")

    monkeypatch.setattr(pipeline, "dedupe", must_not_run)
    real_find_spec = common.importlib.util.find_spec
    monkeypatch.setattr(
        common.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("matplotlib", "pyarrow") else real_find_spec(name, *a),
    )
    table = tmp_path / "t.csv"
    table.write_text("id,name\n1,a\n2,b\n")
    out = tmp_path / "c.csv"
    code, _, err = run(capsys, "dedupe", str(table), "--out", str(out), "--report", "r.html")
    assert code == 1 and "--report needs 'matplotlib'" in err and "veclink[linkage]" in err
    code, _, err = run(capsys, "dedupe", str(tmp_path / "t.parquet"), "--out", str(out))
    assert code == 1 and "Parquet input" in err and "'pyarrow'" in err
    code, _, err = run(capsys, "dedupe", str(table), "--out", str(tmp_path / "no" / "c.csv"))
    assert code == 1 and "does not exist" in err
    assert not out.exists()


@pytest.mark.slow
def test_quiet_means_no_progress_bar_at_all(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--quiet silences veclink's stage bars and the model library's weight-loading bar."""
    table = tmp_path / "people.csv"
    table.write_text(
        "id,name,city\n1,John Smith,Boston\n2,Jon Smith,Boston\n3,Mary Jones,Denver\n"
        "4,Marie Jones,Denver\n5,Ann Lee,Austin\n6,Bob Brown,Miami\n"
    )
    argv = ["dedupe", str(table), "--out", str(tmp_path / "c.csv")]
    code, _, err = run(capsys, *argv)
    assert code == 0 and "Loading weights" in err and "%|" in err  # the bars the test looks for
    code, _, err = run(capsys, *argv, "--quiet")
    assert code == 0 and "Loading weights" not in err and "%|" not in err
    lines = err.splitlines()  # the summary line, then only what the user must be told
    assert lines[0].startswith("wrote ") and all(x.startswith("warning: ") for x in lines[1:])
