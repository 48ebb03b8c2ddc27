"""Tables in text files (CSV / TSV / TXT and JSONL): the one reader and the one CSV writer.

`open_rows` says how a file will be read (encoding detected or given, delimiter sniffed or
given, the header) and then streams its rows as ``(line, record)``: ``line`` is the file
line the record starts on (blank lines skipped, a quoted value may span lines), so every
error names ``FILE:LINE``. The file is read again for each pass and never held whole, so a
large upsert file costs no memory. The linkage tables, the CLI's records files, labels and
gold pairs, and the training data all read through it.

Imports nothing heavy (the client and the CLI use it).
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from veclink.errors import InvalidArgument, NotFound
from veclink.sniff import SNIFF_CHARS, ReadInfo, bom_encoding, sniff_delimiter

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
#: bytes read at a time when a file's encoding is checked
CHUNK_BYTES = 1 << 20

#: ``(line, record)``: the file line a record starts on, and the record
NumberedRow = tuple[int, dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class RowsFile:
    """A text table ready to be streamed; iterate it (again) for its ``(line, record)``."""

    path: Path
    #: how the file is named in errors
    label: str
    #: ``csv`` or ``jsonl``
    format: str
    #: how the file is read (encoding, delimiter, and how each was chosen)
    info: ReadInfo
    #: the CSV header, stripped (empty for JSONL and for an empty file)
    header: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[NumberedRow]:
        with self._open() as fh:
            if self.format == "jsonl":
                yield from self._jsonl(fh)
                return
            rows = self._csv_rows(fh)
            next(rows, None)  # the header
            width = len(self.header)
            for start, values in rows:
                if len(values) > width:
                    raise InvalidArgument(
                        f"{self.label}:{start}: {len(values)} values for the {width} columns "
                        f"of the header {','.join(self.header)!r} "
                        f"(delimiter {self.info.delimiter!r})",
                        field=self.label,
                    )
                yield start, dict(zip(self.header, values, strict=False))

    def _open(self) -> IO[str]:
        return open(self.path, encoding=self.info.encoding, newline="")

    def _csv_rows(self, fh: IO[str]) -> Iterator[tuple[int, list[str]]]:
        """``(first line, values)`` of every row that is not blank, the header included."""
        lines = _Lines(fh)
        reader = csv.reader(lines, delimiter=self.info.delimiter or ",", skipinitialspace=True)
        end = 0  # the last line of the previous row
        for values in self._named_errors(reader, lines):
            start, end = end + 1, reader.line_num
            if any(cell.strip() for cell in values):
                yield start, values

    def _jsonl(self, fh: IO[str]) -> Iterator[NumberedRow]:
        lines = _Lines(fh)
        for text in self._named_errors(lines, lines):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidArgument(
                    f"{self.label}:{lines.count}: not valid JSON: {exc}", field=self.label
                ) from exc
            if not isinstance(record, dict):
                raise InvalidArgument(
                    f"{self.label}:{lines.count}: not a JSON object (got {type(record).__name__})",
                    field=self.label,
                )
            yield lines.count, record

    def _named_errors(self, items: Iterable[Any], lines: _Lines) -> Iterator[Any]:
        """``items``, with an error of the file (malformed CSV; bytes that no longer decode,
        the file having changed since it was checked) named by its line."""
        try:
            yield from items
        except UnicodeDecodeError as exc:
            raise InvalidArgument(
                f"{self.label}: cannot decode as {self.info.encoding} after line {lines.count}: "
                f"{exc.reason}",
                field="encoding",
            ) from exc
        except csv.Error as exc:
            raise InvalidArgument(
                f"{self.label}:{lines.count}: not valid CSV: {exc}", field=self.label
            ) from exc


class _Lines:
    """The lines of a file, counted, with a byte-order mark the codec left in place dropped."""

    def __init__(self, fh: IO[str]) -> None:
        self.fh = fh
        #: lines read so far (the number of the last one)
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        for line in self.fh:
            self.count += 1
            yield _strip_bom(line) if self.count == 1 else line


def _strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


def open_rows(
    path: str | os.PathLike[str],
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    label: str | None = None,
    format: str | None = None,
) -> RowsFile:
    """Check a CSV / TSV / TXT or JSONL file and say how it will be read.

    Args:
        path: the file; its suffix names the format unless ``format`` does.
        encoding: its text encoding; None detects it: a byte-order mark, else UTF-8 when
            the whole file decodes, else cp1252 when it does, else latin-1.
        delimiter: CSV delimiter; None sniffs it among ``,`` ``;`` ``|`` and tab (a
            ``.tsv`` file defaults to tab).
        label: how the file is named in errors (default: its name).
        format: ``csv`` or ``jsonl``.

    Raises:
        NotFound: no such file.
        InvalidArgument: an unknown format or encoding, or a file that does not decode
            with the given encoding (the byte and line named).
    """
    path = Path(path)
    label = label or path.name
    if not path.is_file():
        raise NotFound(f"{label}: file {str(path)!r} does not exist", field=label)
    suffix = path.suffix.lower()
    if format is None:
        format = "csv" if suffix in CSV_SUFFIXES else "jsonl" if suffix in JSONL_SUFFIXES else ""
    if format not in ("csv", "jsonl"):
        raise InvalidArgument(
            f"{label}: unknown table format {suffix or '(none)'!r} "
            f"(use {', '.join(CSV_SUFFIXES + JSONL_SUFFIXES)})",
            field=label,
        )
    if encoding is None:
        encoding, source = detect_file_encoding(path)
    else:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise InvalidArgument(f"unknown encoding {encoding!r}", field="encoding") from exc
        bad = first_undecodable(path, encoding)
        if bad is not None:
            byte, line, reason = bad
            raise InvalidArgument(
                f"{label}: cannot decode as {encoding} at byte {byte} (line {line}): "
                f"{reason}; pass the file's encoding, e.g. --encoding latin-1, "
                "or leave it out to detect it",
                field="encoding",
            )
        source = "given"
    info = ReadInfo(format=format, encoding=encoding, encoding_source=source)
    rows = RowsFile(path=path, label=label, format=format, info=info)
    if format == "jsonl":
        return rows
    if delimiter is None:
        with rows._open() as fh:
            sample = _strip_bom(fh.read(SNIFF_CHARS + 1))
        default = "\t" if suffix == ".tsv" else ","
        delimiter, how = sniff_delimiter(sample, default)
    else:
        how = "given"
    info = dataclasses.replace(info, delimiter=delimiter, delimiter_source=how)
    rows = dataclasses.replace(rows, info=info)
    with rows._open() as fh:
        _, first = next(rows._csv_rows(fh), (0, []))
    return dataclasses.replace(rows, header=tuple(h.strip() for h in first))


def first_undecodable(path: Path, encoding: str) -> tuple[int, int, str] | None:
    """``(byte offset, line, reason)`` of the first bytes of ``path`` that ``encoding``
    cannot decode, or None when the whole file decodes. Reads the file in chunks."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0  # bytes fed before this chunk
    lines = 1
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(CHUNK_BYTES)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                held = len(exc.object) - len(chunk)  # bytes the decoder kept from before
                at = offset - held + exc.start
                before = lines - (bytes(exc.object[:held]).count(b"\n"))
                return at, before + bytes(exc.object[: exc.start]).count(b"\n"), exc.reason
            if not chunk:
                return None
            offset += len(chunk)
            lines += chunk.count(b"\n")


def detect_file_encoding(path: Path) -> tuple[str, str]:
    """``(encoding, source)``: a byte-order mark's encoding (``bom``), else UTF-8 when the
    whole file decodes (``utf-8``), else cp1252 when it does (Windows "latin-1": every byte
    but five is defined), else latin-1, which decodes anything (both ``fallback``)."""
    with path.open("rb") as fh:
        bom = bom_encoding(fh.read(4))
    if bom is not None and first_undecodable(path, bom) is None:
        return bom, "bom"
    for encoding, source in (("utf-8", "utf-8"), ("cp1252", "fallback")):
        if first_undecodable(path, encoding) is None:
            return encoding, source
    return "latin-1", "fallback"


# ------------------------------------------------------------------------------ writing


def write_csv(
    path: str | os.PathLike[str], header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Write a UTF-8 CSV file: ``header``, then ``rows``; returns the number of rows."""
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            n += 1
    return n


def write_pairs_csv(path: str | os.PathLike[str], pairs: Iterable[tuple[str, str, float]]) -> int:
    """Write matched pairs as ``left_id,right_id,score`` (score to 6 decimals)."""
    return write_csv(
        path, ("left_id", "right_id", "score"), ((a, b, f"{s:.6f}") for a, b, s in pairs)
    )


def write_entities_csv(path: str | os.PathLike[str], rows: Iterable[tuple[str, str]]) -> int:
    """Write deduplicated records as ``id,entity_id``."""
    return write_csv(path, ("id", "entity_id"), rows)
