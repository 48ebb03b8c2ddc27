"""Records files for ``veclink upsert``: JSONL, CSV or TSV, checked before anything is sent."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from veclink.errors import InvalidArgument, VeclinkError


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


def read_records(path: Path, load_images: bool = True) -> Iterator[dict[str, Any]]:
    """Records from JSONL (``id``, ``text`` / ``image`` path / ``vector``, ``payload`` or other
    keys) or CSV / TSV (``id``, ``text`` and/or ``image``; other columns -> payload).

    Image paths are relative to the records file; ``load_images=False`` only checks them.
    """
    if not path.exists():
        raise InvalidArgument(f"file {path} does not exist", field="file")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidArgument(
                        f"{path}:{lineno}: invalid JSON: {exc}", field="file"
                    ) from exc
                if not isinstance(obj, dict) or "id" not in obj:
                    raise InvalidArgument(
                        f"{path}:{lineno}: each line needs an object with 'id'", field="file"
                    )
                payload = dict(obj.get("payload") or {})
                payload.update(
                    {
                        k: v
                        for k, v in obj.items()
                        if k not in ("id", "text", "vector", "image", "payload")
                    }
                )
                yield {
                    "id": str(obj["id"]),
                    "text": obj.get("text"),
                    "image": _image(path, obj.get("image"), f"{path}:{lineno}", load_images),
                    "vector": obj.get("vector"),
                    "payload": payload,
                }
    elif path.suffix.lower() in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            if reader.fieldnames is None or "id" not in reader.fieldnames:
                raise InvalidArgument(f"{path}: the header needs an 'id' column", field="file")
            if "text" not in reader.fieldnames and "image" not in reader.fieldnames:
                raise InvalidArgument(
                    f"{path}: the header needs a 'text' or an 'image' column", field="file"
                )
            for lineno, row in enumerate(reader, 2):
                yield {
                    "id": row["id"],
                    "text": row.get("text") or None,
                    "image": _image(path, row.get("image"), f"{path}:{lineno}", load_images),
                    "payload": {
                        k: _parse_scalar(v)
                        for k, v in row.items()
                        if k not in ("id", "text", "image") and v != ""
                    },
                }
    else:
        raise InvalidArgument(f"{path}: use a .jsonl or .csv file", field="file")


def batched(it: Iterator[dict[str, Any]], n: int) -> Iterator[list[dict[str, Any]]]:
    while batch := list(itertools.islice(it, n)):
        yield batch
