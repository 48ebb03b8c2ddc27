"""Tables of records: loading (CSV / Parquet / JSONL / SQL) and checks before any work starts.

A `Table` holds string ids and string-or-None values per column; everything downstream
(serialisation, comparison) reads records through it. Loading and checking report every
problem they can see at once: missing id column, duplicate or empty ids, empty table,
undecodable file, missing field columns.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from veclink.errors import InvalidArgument, NotFound
from veclink.sniff import ReadInfo, bom_encoding
from veclink.tabular import CSV_SUFFIXES, JSONL_SUFFIXES, open_rows


@dataclasses.dataclass(frozen=True)
class Table:
    """Records keyed by a string id; every value is a string or None (missing)."""

    name: str
    id_column: str
    ids: tuple[str, ...]
    columns: tuple[str, ...]
    #: column -> values, aligned with ``ids``
    data: Mapping[str, tuple[str | None, ...]]
    #: how the table was read (encoding, delimiter), None when built in memory
    info: ReadInfo | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def column(self, name: str) -> tuple[str | None, ...]:
        return self.data[name]

    def record(self, i: int) -> dict[str, str | None]:
        return {c: self.data[c][i] for c in self.columns}

    def position(self) -> dict[str, int]:
        """id -> row number."""
        return {rid: i for i, rid in enumerate(self.ids)}

    @classmethod
    def from_records(
        cls, records: Sequence[Mapping[str, Any]], *, id_column: str, name: str = "table"
    ) -> Table:
        """Build a table from dicts (ids and values become strings; '' and None are missing).

        Raises:
            InvalidArgument: empty table, missing id column, empty or duplicate ids.
        """
        columns: list[str] = []
        for rec in records:
            for key in rec:
                if key not in columns:
                    columns.append(key)
        problems = check_records(records, columns, id_column, name)
        if problems:
            raise InvalidArgument("; ".join(problems), field=name)
        ids = tuple(_clean(rec.get(id_column)) or "" for rec in records)
        cols = tuple(c for c in columns if c != id_column)
        data = {c: tuple(_clean(rec.get(c)) for rec in records) for c in cols}
        return cls(name=name, id_column=id_column, ids=ids, columns=cols, data=data)

    def subset(self, rows: Iterable[int]) -> Table:
        rows = list(rows)
        return Table(
            name=self.name,
            id_column=self.id_column,
            ids=tuple(self.ids[i] for i in rows),
            columns=self.columns,
            data={c: tuple(v[i] for i in rows) for c, v in self.data.items()},
            info=self.info,
        )


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from pandas / parquet
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def check_records(
    records: Sequence[Mapping[str, Any]], columns: Sequence[str], id_column: str, name: str
) -> list[str]:
    """Problems of a table's rows: empty, missing id column, empty / duplicate ids."""
    if not records:
        return [f"{name}: the table is empty (no records)"]
    if id_column not in columns:
        return [f"{name}: id column {id_column!r} not found; header seen: {list(columns)!r}"]
    problems = []
    seen: dict[str, int] = {}
    dups: list[str] = []
    empty: list[int] = []
    for i, rec in enumerate(records):
        rid = _clean(rec.get(id_column))
        if rid is None:
            empty.append(i + 1)
            continue
        if rid in seen and len(dups) < 5:
            dups.append(f"{rid!r} (rows {seen[rid]} and {i + 1})")
        seen.setdefault(rid, i + 1)
    if empty:
        shown = ", ".join(map(str, empty[:5])) + (" ..." if len(empty) > 5 else "")
        problems.append(
            f"{name}: {len(empty)} record(s) have an empty id ({id_column!r}): rows {shown}"
        )
    if dups:
        problems.append(f"{name}: duplicate ids in {id_column!r}: {', '.join(dups)}")
    return problems


# ------------------------------------------------------------------------------ loading


def read_table(
    source: str | os.PathLike[str],
    *,
    id_column: str = "id",
    encoding: str | None = None,
    delimiter: str | None = None,
    name: str | None = None,
    engine: Any = None,
) -> Table:
    """Load a table from a CSV/TSV/TXT, Parquet or JSONL file, or a SQL query on ``engine``.

    The returned table's ``info`` says how it was read (encoding, delimiter).

    Args:
        source: a file path, or a SQL ``SELECT`` when ``engine`` (SQLAlchemy) is given.
        id_column: the column holding record ids (must be present, non-empty and unique).
        encoding: text encoding of CSV / JSONL files, e.g. ``latin-1``; None detects it per
            file (a byte-order mark, else UTF-8 when the file decodes, else cp1252, else
            latin-1; see `veclink.tabular.detect_file_encoding`).
        delimiter: CSV delimiter; None sniffs it among ``,`` ``;`` ``|`` and tab.
        name: how the table is named in errors (default: the file name).
        engine: a SQLAlchemy Engine to run ``source`` on.

    Raises:
        NotFound: the file does not exist.
        InvalidArgument: unknown format, undecodable file, or bad rows (see `check_records`).

    CSV / TSV / TXT and JSONL files are read by `veclink.tabular.open_rows`.
    """
    if engine is not None:
        return _read_sql(str(source), engine, id_column, name or "query")
    path = Path(source)
    label = name or path.name
    suffix = path.suffix.lower()
    if suffix not in (*CSV_SUFFIXES, *JSONL_SUFFIXES, ".parquet", ".pq"):
        raise InvalidArgument(
            f"{label}: unknown table format {suffix or '(none)'!r} "
            "(use .csv, .tsv, .txt, .jsonl or .parquet)",
            field=label,
        )
    if suffix in (".parquet", ".pq"):
        if not path.is_file():
            raise NotFound(f"{label}: file {str(path)!r} does not exist", field=label)
        records, columns = _read_parquet(path, label)
        info = ReadInfo(format="parquet")
    else:
        rows = open_rows(path, encoding=encoding, delimiter=delimiter, label=label)
        records = [record for _, record in rows]
        columns = list(rows.header)
        if rows.format == "jsonl":
            for record in records:
                columns += [k for k in record if k not in columns]
        info = rows.info
    problems = check_records(records, columns, id_column, label)
    if problems and info.encoding_source == "given":
        problems += _bom_hint(path, info.encoding or "", label)
    if problems:
        raise InvalidArgument("; ".join(problems), field=label)
    table = Table.from_records(records, id_column=id_column, name=label)
    return dataclasses.replace(table, info=info)


def _bom_hint(path: Path, encoding: str, label: str) -> list[str]:
    """A hint when a given encoding contradicts the file's byte-order mark."""
    with path.open("rb") as fh:
        bom = bom_encoding(fh.read(4))
    if bom is None or codecs.lookup(encoding).name.startswith("utf"):
        return []
    return [
        f"{label}: the file starts with a {bom} byte-order mark but was read as {encoding}; "
        "leave the encoding out to detect it"
    ]


def _read_parquet(path: Path, label: str) -> tuple[list[dict[str, Any]], list[str]]:
    from veclink._optional import require

    pq = require("pyarrow.parquet", "linkage")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise InvalidArgument(f"{label}: cannot read Parquet: {exc}", field=label) from exc
    return table.to_pylist(), list(table.column_names)


def _read_sql(query: str, engine: Any, id_column: str, label: str) -> Table:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn:
            result = conn.execute(text(query))
            columns = list(result.keys())
            records = [dict(zip(columns, row, strict=True)) for row in result]
    except SQLAlchemyError as exc:
        raise InvalidArgument(f"{label}: SQL query failed: {exc}", field=label) from exc
    return table_from_query(records, columns, id_column, label)


def table_from_query(
    records: Sequence[Mapping[str, Any]], columns: Sequence[str], id_column: str, label: str
) -> Table:
    """The table of a SQL query's rows, checked like any other input (see `check_records`)."""
    problems = check_records(records, list(columns), id_column, label)
    if problems:
        raise InvalidArgument("; ".join(problems), field=label)
    table = Table.from_records(records, id_column=id_column, name=label)
    return dataclasses.replace(table, info=ReadInfo(format="sql"))
