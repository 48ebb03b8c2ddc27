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
    with pytest.raises(InvalidArgument, match=r"id column 'id' not found \(columns: key, name\)"):
        read_table(p)


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
    with pytest.raises(InvalidArgument, match="share no column"):
        prepare_inputs({}, a, b)
