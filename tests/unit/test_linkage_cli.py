"""The link / dedupe subcommands, the HTML report and the terminal active-learning prompt."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import pytest
from veclink.cli.linkage import add_subcommands, main, parse_field, terminal_ask

from tests.fixtures.linkage import support
from veclink.errors import InvalidArgument

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "linkage"


def run(argv: list[str]) -> int:
    """Parse like the veclink CLI, then inject the tiny encoder and the test index."""
    s = support
    parser = argparse.ArgumentParser(prog="veclink")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.encoder = s.HashEncoder()
    args.index_factory = s.index_factory()
    return int(args.func(args))


def test_parse_field_forms() -> None:
    assert parse_field("title") == {"name": "title"}
    assert parse_field("year:number") == {"name": "year", "type": "number"}
    assert parse_field("brand=manufacturer:category") == {
        "name": "brand",
        "right": "manufacturer",
        "type": "category",
    }
    with pytest.raises(InvalidArgument, match="not one of"):
        parse_field("year:int")
    with pytest.raises(InvalidArgument, match="cannot read"):
        parse_field("a=")


def test_link_writes_pairs_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, report = tmp_path / "pairs.csv", tmp_path / "report.html"
    rc = run(
        [
            "link",
            str(FIX / "dblp_sample.csv"),
            str(FIX / "acm_sample.csv"),
            "--out",
            str(out),
            "--fields",
            "title:text",
            "authors:text",
            "venue",
            "year:number",
            "--encoding",
            "latin-1",
            "--precision",
            "0.9",
            "--report",
            str(report),
            "--gold",
            str(FIX / "dblp_acm_gold.csv"),
            "--database",
            f"sqlite:///{tmp_path / 'jobs.db'}",
        ]
    )
    assert rc == 0
    rows = list(csv.reader(open(out, encoding="utf-8")))
    assert rows[0] == ["left_id", "right_id", "score"] and len(rows) > 100
    err = capsys.readouterr().err
    assert "estimated precision" in err and "F1" in err and "saved as job" in err
    page = report.read_text(encoding="utf-8")
    for needle in (
        "data:image/png;base64,",
        "Precision and recall against threshold",
        "Entity sizes",
        "Pairs nearest the threshold",
        "true F1",
    ):
        assert needle in page


def test_dedupe_with_labels(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "left_id,right_id,label\nrec-4-org,rec-4-dup-0,1\nrec-24-org,rec-24-dup-0,yes\n"
        "rec-4-org,rec-24-org,0\n"
    )
    out, report = tmp_path / "clusters.csv", tmp_path / "r.html"
    rc = run(
        [
            "dedupe",
            str(FIX / "febrl1_sample.csv"),
            "--out",
            str(out),
            "--id",
            "rec_id",
            "--fields",
            "given_name:name",
            "surname:name",
            "address_1",
            "suburb",
            "postcode:code",
            "date_of_birth:date",
            "soc_sec_id:code",
            "--labels",
            str(labels),
            "--quiet",
            "--report",
            str(report),
        ]
    )
    assert rc == 0
    rows = list(csv.reader(open(out, encoding="utf-8")))
    assert rows[0] == ["id", "entity_id"] and len(rows) == 121
    entity = dict(rows[1:])
    assert entity["rec-4-org"] == entity["rec-4-dup-0"]
    assert "dedupe report" in report.read_text(encoding="utf-8")


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "link",
            str(FIX / "dblp_sample.csv"),
            str(FIX / "acm_sample.csv"),
            "--out",
            str(tmp_path / "o.csv"),
            "--left-id",
            "key",
            "--fields",
            "title",
            "--precision",
            "1.5",
            "--encoding",
            "utf-8",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "spec.precision" in err and "cannot decode as utf-8" in err
    assert not (tmp_path / "o.csv").exists()


def test_terminal_ask_reads_answers() -> None:
    from veclink.linkage.active import Question, StopLabelling

    answers = iter(["maybe", "y", "n", "", "q"])
    ask = terminal_ask(input_fn=lambda _: next(answers), out=io.StringIO())
    q = Question(0, "l1", "r1", {"title": "a"}, {"title": "a"}, 0.5, 0, 3)
    assert ask(q) is True
    assert ask(q) is False
    assert ask(q) is None
    with pytest.raises(StopLabelling):
        ask(q)


def test_link_with_renamed_columns_aligns_and_writes_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No flags but the files: columns aligned, encodings detected, summary JSON written."""
    import json

    src = list(csv.DictReader(io.StringIO((FIX / "buy_sample.csv").read_bytes().decode("latin-1"))))
    renamed = tmp_path / "buy.csv"  # the right side's columns named differently, ';'-separated
    with open(renamed, "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(["key", "product_title", "about", "maker", "cost"])
        for r in src:
            w.writerow([r["id"], r["name"], r["description"], r["manufacturer"], r["price"]])
    out, summary = tmp_path / "pairs.csv", tmp_path / "summary.json"
    rc = run(
        [
            "link",
            str(FIX / "abt_sample.csv"),
            str(renamed),
            "--right-id",
            "key",
            "--out",
            str(out),
            "--precision",
            "0",
            "--summary",
            str(summary),
            "--quiet",
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "columns aligned: name=product_title" in err
    assert "best estimated F1" in err
    data = json.loads(summary.read_text())
    assert data["mode"] == "link" and data["pairs"] > 0
    assert data["assignment"] in ("one_to_one", "one_to_many", "many_to_one", "many_to_many")
    lo, hi = data["estimated_precision_interval"]
    assert lo <= data["estimated_precision"] <= hi
    aligned = {(m["left"], m["right"]) for m in data["alignment"]["matches"]}
    assert ("name", "product_title") in aligned
    assert data["inputs"]["right"]["delimiter"] == ";"
    assert data["inputs"]["right"]["encoding"].startswith("utf-8")  # the BOM was seen
    assert isinstance(data["warnings"], list)
    assert [s["name"] for s in data["stages"]][:2] == ["align", "embed"]
