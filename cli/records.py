"""Records files for ``veclink upsert``: JSONL, CSV or TSV, checked before anything is sent.

Every record comes with the line of the file it was read from, so that an error (ours, or
the server's about ``records[i]`` of a batch) names ``FILE:LINE``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from veclink.errors import InvalidArgument, VeclinkError
from veclink.tabular import open_rows

#: (line in the file, record dict)
NumberedRecord = tuple[int, dict[str, Any]]


def _parse_scalar(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _image(path: Path, value: Any, where: str, load: bool) -> bytes | str | None:
    """An ``image`` field: a path relative to the records file, read as encoded bytes."""
    if value in (None, ""):
        return None
    from veclink.encoders.images import read_image_file

    image_path = (path.parent / str(value)).resolve()
    if not load:
        if not image_path.is_file():
            raise InvalidArgument(f"{where}: image {str(value)!r} does not exist", field="file")
        return str(image_path)
    try:
        return read_image_file(str(image_path))
    except VeclinkError as exc:
        raise type(exc)(f"{where}: {exc}", field="file") from exc


def _jsonl(path: Path, load_images: bool) -> Iterator[NumberedRecord]:
    for lineno, obj in open_rows(path, format="jsonl", label=str(path)):
        where = f"{path}:{lineno}"
        if "id" not in obj:
            raise InvalidArgument(
                f"{where}: each line needs an object with 'id' (got keys {', '.join(obj)})",
                field="file",
            )
        payload = dict(obj.get("payload") or {})
        payload.update(
            {k: v for k, v in obj.items() if k not in ("id", "text", "vector", "image", "payload")}
        )
        yield (
            lineno,
            {
                "id": str(obj["id"]),
                "text": obj.get("text"),
                "image": _image(path, obj.get("image"), where, load_images),
                "vector": obj.get("vector"),
                "payload": payload,
            },
        )


def _delimited(path: Path, load_images: bool) -> Iterator[NumberedRecord]:
    rows = open_rows(
        path,
        format="csv",
        delimiter="\t" if path.suffix.lower() == ".tsv" else ",",
        label=str(path),
    )
    header = rows.header
    seen = f"the header is {','.join(header)!r}" if header else "the file is empty"
    if "id" not in header:
        raise InvalidArgument(f"{path}:1: the header needs an 'id' column; {seen}", field="file")
    if "text" not in header and "image" not in header:
        raise InvalidArgument(
            f"{path}:1: the header needs a 'text' or an 'image' column; {seen}", field="file"
        )
    for start, row in rows:
        yield (
            start,
            {
                "id": row.get("id"),
                "text": row.get("text") or None,
                "image": _image(path, row.get("image"), f"{path}:{start}", load_images),
                "payload": {
                    k: _parse_scalar(v)
                    for k, v in row.items()
                    if k not in ("id", "text", "image") and v not in ("", None)
                },
            },
        )


def numbered_records(path: Path, load_images: bool = True) -> Iterator[NumberedRecord]:
    """``(line, record)`` from JSONL (``id``, ``text`` / ``image`` path / ``vector``,
    ``payload`` or other keys) or CSV / TSV (``id``, ``text`` and/or ``image``; other
    columns -> payload, numbers parsed), read by `veclink.tabular.open_rows` (encoding
    detected: UTF-8, else cp1252 / latin-1; a byte-order mark is honoured).

    Image paths are relative to the records file; ``load_images=False`` only checks them.

    Raises:
        InvalidArgument: a missing file, an unknown suffix, or a bad line, named as
            ``FILE:LINE`` (with the header seen, for a header that lacks a column).
    """
    if not path.exists():
        raise InvalidArgument(f"file {path} does not exist", field="file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _jsonl(path, load_images)
    if suffix in (".csv", ".tsv"):
        return _delimited(path, load_images)
    raise InvalidArgument(f"{path}: use a .jsonl, .csv or .tsv file", field="file")


def read_records(path: Path, load_images: bool = True) -> Iterator[dict[str, Any]]:
    """The records of ``numbered_records`` without their line numbers."""
    return (record for _, record in numbered_records(path, load_images))


def batched(it: Iterator[NumberedRecord], n: int) -> Iterator[list[NumberedRecord]]:
    """Consecutive lists of ``n`` items (the last one shorter)."""
    while batch := list(itertools.islice(it, n)):
        yield batch


_BATCH_ERROR = re.compile(r"batch (\d+) \(after (\d+) records stored\): records\[(\d+)\]")


def locate_batch_error(message: str, path: Path, lines: Sequence[Sequence[int]]) -> str:
    """Name the file's line in the server's ``batch B (after N records stored): records[i]...``.

    ``lines[B][i]`` is the line of record ``i`` of batch ``B``; batches are stored whole, so
    the records before batch ``B`` are the ones stored. Other messages pass unchanged.
    """
    match = _BATCH_ERROR.search(message)
    if match is None:
        return message
    b, stored, i = (int(g) for g in match.groups())
    if b >= len(lines) or i >= len(lines[b]):
        return message
    kept = (
        "nothing was stored"
        if stored == 0
        else f"the {stored} records before line {lines[b][0]} were stored"
    )
    return (
        f"{message[: match.start()]}{path}:{lines[b][i]}: record{message[match.end() :]} ({kept})"
    )
