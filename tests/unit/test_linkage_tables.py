"""Loading tables and rejecting bad input before any work starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from veclink.linkage import Table, prepare_inputs, read_table

from veclink.errors import InvalidArgument, NotFound

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "linkage"


def test_latin1_csv_needs_its_encoding() -> None:
    with pytest.raises(InvalidArgument) as info:
        read_table(FIX / "dblp_sample.csv", encoding="utf-8")
    assert "cannot decode as utf-8" in str(info.value)
    assert "--encoding latin-1" in str(info.value)
    table = read_table(FIX / "dblp_sample.csv", encoding="latin-1")
    assert len(table) == 145
    assert table.columns == ("title", "authors", "venue", "year")
    assert any("é" in (a or "") for a in table.column("authors"))


def test_missing_id_column_names_the_columns(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("key,name\n1,a\n2,b\n")
    with pytest.raises(
        InvalidArgument, match=r"id column 'id' not found; header seen: \['key', 'name'\]"
    ):
        read_table(p)


def test_encoding_is_detected_per_file(tmp_path: Path) -> None:
    # latin-1 bytes that are not UTF-8: read as cp1252 (a superset for printable text)
    table = read_table(FIX / "dblp_sample.csv")
    assert table.info is not None and table.info.encoding == "cp1252"
    assert table.info.encoding_source == "fallback" and table.info.delimiter == ","
    assert any("é" in (a or "") for a in table.column("authors"))
    # an explicit encoding still wins
    assert read_table(FIX / "dblp_sample.csv", encoding="latin-1").info.encoding == "latin-1"
    # UTF-8 with a BOM, quoted header: the BOM is gone from the first column name
    p = tmp_path / "bom.csv"
    p.write_bytes(b'\xef\xbb\xbf"id","name"\n1,Caf\xc3\xa9\n')
    t = read_table(p)
    assert t.info.encoding == "utf-8-sig" and t.info.encoding_source == "bom"
    assert t.columns == ("name",) and t.column("name") == ("Café",)
    # UTF-16 with a BOM
    q = tmp_path / "u16.csv"
    q.write_bytes("id;name\n1;Zoë\n".encode("utf-16"))
    t = read_table(q)
    assert t.info.encoding == "utf-16" and t.info.delimiter == ";"
    assert t.column("name") == ("Zoë",)
    # plain UTF-8
    r = tmp_path / "u8.csv"
    r.write_bytes("id,name\n1,Zoë\n".encode())
    assert read_table(r).info.encoding == "utf-8"
    # a byte cp1252 leaves undefined (0x81): latin-1, which decodes anything
    s = tmp_path / "raw.csv"
    s.write_bytes(b"id,name\n1,a\x81b\n")
    t = read_table(s)
    assert t.info.encoding == "latin-1" and t.column("name") == ("a\x81b",)


def test_header_errors_show_the_header_seen_without_mojibake(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes(b'\xef\xbb\xbf"key","title"\n1,x\n')
    with pytest.raises(InvalidArgument) as info:
        read_table(p)
    assert "header seen: ['key', 'title']" in str(info.value)
    # read with a wrong explicit encoding: the header is shown as read, with a hint
    with pytest.raises(InvalidArgument) as info:
        read_table(p, encoding="latin-1")
    msg = str(info.value)
    assert "header seen: [" in msg
    assert "utf-8-sig byte-order mark but was read as latin-1" in msg


@pytest.mark.parametrize(
    ("delimiter", "suffix"), [(",", ".csv"), (";", ".csv"), ("|", ".txt"), ("\t", ".tsv")]
)
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str, suffix: str) -> None:
    # values hold the other candidates (commas in text, a pipe, a semicolon), quoted
    rows = [
        ["id", "title", "note", "price"],
        ["1", "Hello, world", "a;b", "1,5"],
        ["2", '"quoted | pipe"', "", "2"],
        ["3", "plain", "x, y, z", ""],
    ]
    p = tmp_path / f"t{suffix}"
    with open(p, "w", newline="", encoding="utf-8") as fh:
        import csv

        csv.writer(fh, delimiter=delimiter).writerows(rows)
    t = read_table(p)
    assert t.info.delimiter == delimiter and t.info.delimiter_source == "sniffed"
    assert t.columns == ("title", "note", "price")
    assert t.column("title") == ("Hello, world", '"quoted | pipe"', "plain")
    assert t.column("note") == ("a;b", None, "x, y, z")
    # an explicit delimiter wins
    assert read_table(p, delimiter=delimiter).info.delimiter_source == "given"


def test_pipe_separated_with_url_headers_and_empty_cells(tmp_path: Path) -> None:
    p = tmp_path / "ccer.csv"
    p.write_text(
        "id|http://x.org/onto#name|http://x.org/onto#phone_number|street\n"
        "0|new york||\n1|la grotta|404/231-1368|\n2|art's deli, inc.||12224 ventura blvd.\n",
        encoding="utf-8",
    )
    t = read_table(p)
    assert t.info.delimiter == "|"
    assert t.columns == ("http://x.org/onto#name", "http://x.org/onto#phone_number", "street")
    assert t.column("street") == (None, None, "12224 ventura blvd.")


def test_single_column_file_keeps_the_default_delimiter(tmp_path: Path) -> None:
    p = tmp_path / "ids.csv"
    p.write_text("id\n1\n2\n")
    t = read_table(p)
    assert t.info.delimiter == "," and t.info.delimiter_source == "default"
    assert t.columns == ()


def test_gold_pairs_and_labels_are_sniffed_too(tmp_path: Path) -> None:
    from veclink.linkage import read_labels, read_pairs

    g = tmp_path / "gt.csv"
    g.write_text("D1|D2\n65|270\n291|73\n")
    assert read_pairs(g) == [("65", "270"), ("291", "73")]
    lab = tmp_path / "labels.csv"
    lab.write_bytes("left_id;right_id;label\n1;2;yes\n".encode("utf-8-sig"))
    assert [(x.left_id, x.right_id, x.match) for x in read_labels(lab)] == [("1", "2", True)]
    # their header errors show the header seen too
    with pytest.raises(InvalidArgument, match=r"header seen: \['D1', 'D2'\]"):
        read_pairs(g, left_column="idA")
    bad = tmp_path / "bad_labels.csv"
    bad.write_text("left_id,right,label\n1,2,yes\n")
    with pytest.raises(InvalidArgument, match=r"header seen: \['left_id', 'right', 'label'\]"):
        read_labels(bad)


def test_spaces_after_delimiters_and_quotes_are_read(tmp_path: Path) -> None:
    p = tmp_path / "spaced.csv"
    p.write_text('id, name, note\n1, "Smith, John", "a, b"\n2, Doe, \n')
    t = read_table(p)
    assert t.columns == ("name", "note")
    assert t.column("name") == ("Smith, John", "Doe") and t.column("note") == ("a, b", None)


def test_duplicate_and_empty_ids_are_reported_with_rows(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("id,name\n1,a\n2,b\n1,c\n,d\n")
    with pytest.raises(InvalidArgument) as info:
        read_table(p)
    msg = str(info.value)
    assert "duplicate ids in 'id': '1' (rows 1 and 3)" in msg
    assert "1 record(s) have an empty id" in msg


def test_empty_table_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.csv"
    p.write_text("id,name\n")
    with pytest.raises(InvalidArgument, match="the table is empty"):
        read_table(p)
    with pytest.raises(NotFound, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    q = tmp_path / "t.xlsx"
    q.write_text("x")
    with pytest.raises(InvalidArgument, match="unknown table format"):
        read_table(q)


def test_jsonl_parquet_and_sql_sources(tmp_path: Path) -> None:
    rows = [{"id": 1, "name": "a", "price": 2.5}, {"id": 2, "name": "b", "price": None}]
    j = tmp_path / "t.jsonl"
    j.write_text("\n".join(json.dumps(r) for r in rows))
    t = read_table(j)
    assert t.ids == ("1", "2") and t.column("price") == ("2.5", None)

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    assert read_table(tmp_path / "t.parquet").column("name") == ("a", "b")

    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE items (id INTEGER, name TEXT)"))
        conn.execute(text("INSERT INTO items VALUES (1, 'a'), (2, 'b')"))
    t = read_table("SELECT id, name FROM items ORDER BY id", engine=engine)
    assert t.ids == ("1", "2")
    with pytest.raises(InvalidArgument, match="SQL query failed"):
        read_table("SELECT nope FROM items", engine=engine)


def test_from_records_and_dataframe() -> None:
    import pandas as pd

    t = Table.from_records([{"k": 1, "v": " x "}, {"k": 2.0, "v": float("nan")}], id_column="k")
    assert t.ids == ("1", "2") and t.column("v") == ("x", None)
    df = pd.DataFrame({"id": ["a", "b"], "name": ["x", "y"]})
    spec, left, right = prepare_inputs({}, df, [{"id": "c", "name": "z"}])
    assert left.ids == ("a", "b") and right is not None and right.ids == ("c",)


def test_prepare_inputs_reports_every_problem_together(tmp_path: Path) -> None:
    dup = tmp_path / "dup.csv"
    dup.write_text("id,title\n1,a\n1,b\n")
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("key,title\n1,a\n")
    with pytest.raises(InvalidArgument) as info:
        prepare_inputs({"precision": 2}, dup, nocol)
    msg = str(info.value)
    assert "spec.precision" in msg
    assert "dup.csv: duplicate ids" in msg
    assert "nocol.csv: id column 'id' not found" in msg


def test_missing_field_columns_are_reported_per_side(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("id,title\n1,x\n")
    b = tmp_path / "b.csv"
    b.write_text("id,name\n1,x\n")
    spec = {"fields": [{"name": "title"}, {"name": "year", "type": "number"}]}
    with pytest.raises(InvalidArgument) as info:
        prepare_inputs(spec, a, b)
    msg = str(info.value)
    assert "field 'title': column 'title' not in b.csv" in msg
    assert "field 'year': column 'year' not in a.csv" in msg
    assert "field 'year': column 'year' not in b.csv" in msg
    # without fields the tables need not share a column name: the job aligns them
    from veclink.linkage import LinkageSpec
    from veclink.linkage.serialize import resolve_fields

    _, lt, rt = prepare_inputs({}, a, b)
    fields = resolve_fields(LinkageSpec(), lt, rt)
    assert [(f.name, f.left_column, f.right_column) for f in fields] == [("title", "title", "name")]
