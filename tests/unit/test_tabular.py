"""The one reader of text tables (CSV / TSV / JSONL) and the one CSV writer."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from veclink.errors import InvalidArgument, NotFound
from veclink.tabular import (
    first_undecodable,
    open_rows,
    write_entities_csv,
    write_pairs_csv,
)


def test_csv_rows_carry_the_line_they_start_on(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text('\nid, text\n1,"two\nlines"\n\n2, plain\n')
    rows = open_rows(p)
    assert rows.header == ("id", "text") and rows.info.delimiter == ","
    assert list(rows) == [(3, {"id": "1", "text": "two\nlines"}), (6, {"id": "2", "text": "plain"})]
    assert list(rows) == list(rows)  # each pass reads the file again
    p.write_text("id,text\n1,a\n2,b,c\n")
    with pytest.raises(InvalidArgument, match=r"t.csv:3: 3 values for the 2 columns of the header"):
        list(open_rows(p))


def test_jsonl_rows_and_their_errors(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    # U+2028 is a line break to str.splitlines but not inside a JSONL file
    p.write_text('{"id": 1, "text": "a\u2028b"}\n\n{"id": 2}\r\n', encoding="utf-8")
    assert list(open_rows(p)) == [(1, {"id": 1, "text": "a\u2028b"}), (3, {"id": 2})]
    p.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(InvalidArgument, match=r"t.jsonl:2: not a JSON object \(got list\)"):
        list(open_rows(p))
    p.write_text('{"id": 1}\n{"id": \n')
    with pytest.raises(InvalidArgument, match=r"t.jsonl:2: not valid JSON"):
        list(open_rows(p))


def test_encodings_detected_or_given(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbfid;name\n1;Caf\xc3\xa9\n")
    rows = open_rows(p)
    assert (rows.info.encoding, rows.info.encoding_source) == ("utf-8-sig", "bom")
    assert rows.header == ("id", "name") and rows.info.delimiter == ";"
    # the BOM is dropped with an explicit UTF-8 as well
    assert open_rows(p, encoding="utf-8").header == ("id", "name")
    q = tmp_path / "cp.csv"
    q.write_bytes(b"id,name\n1,Caf\xe9\n")
    assert open_rows(q).info.encoding == "cp1252"
    assert list(open_rows(q))[0][1]["name"] == "Café"
    with pytest.raises(InvalidArgument, match=r"cannot decode as utf-8 at byte 13 \(line 2\)"):
        open_rows(q, encoding="utf-8")
    with pytest.raises(InvalidArgument, match="unknown encoding"):
        open_rows(q, encoding="no-such-codec")
    with pytest.raises(NotFound):
        open_rows(tmp_path / "missing.csv")
    xls = tmp_path / "t.xls"
    xls.write_bytes(b"")
    with pytest.raises(InvalidArgument, match="unknown table format '.xls'"):
        open_rows(xls)


def test_an_undecodable_byte_is_found_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import veclink.tabular as tabular

    monkeypatch.setattr(tabular, "CHUNK_BYTES", 7)
    p = tmp_path / "t.txt"
    # a two-byte character cut by the chunk boundary, then a bad byte on line 3
    p.write_bytes("ab\nabé\nxyz".encode() + b"\xff\n")
    assert first_undecodable(p, "utf-8")[:2] == (11, 3)
    p.write_bytes("ab\nabé\nxyz\n".encode())
    assert first_undecodable(p, "utf-8") is None


def test_pairs_and_entities_writers(tmp_path: Path) -> None:
    out = tmp_path / "pairs.csv"
    assert write_pairs_csv(out, [("a", "b", 0.91234567), ("c,d", "e", 1.0)]) == 2
    with out.open(newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh)) == [
            ["left_id", "right_id", "score"],
            ["a", "b", "0.912346"],
            ["c,d", "e", "1.000000"],
        ]
    ent = tmp_path / "entities.csv"
    assert write_entities_csv(ent, iter([("1", "1"), ("2", "1")])) == 2
    assert [r for _, r in open_rows(ent)] == [
        {"id": "1", "entity_id": "1"},
        {"id": "2", "entity_id": "1"},
    ]
