"""Record commands: ``veclink upsert``, ``search``, ``embed``, ``get`` and ``delete``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veclink.cli.common import add_remote, client, non_negative_int, positive_int
from veclink.cli.records import batched, locate_batch_error, numbered_records

from veclink.errors import InvalidArgument

if TYPE_CHECKING:
    import numpy as np


def add_parsers(sub: Any) -> None:
    """Register the record commands on the top-level sub-parsers."""
    p = add_remote(sub.add_parser("upsert", help="upsert records from a JSONL or CSV file"))
    p.add_argument("collection")
    p.add_argument(
        "file",
        help="JSONL (id, text | vector, payload...) or CSV (id, text, other columns -> payload)",
    )
    p.add_argument("--batch-size", type=positive_int, default=256, help="records per request")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_upsert)

    p = add_remote(sub.add_parser("search", help="search a collection by text, image or vector"))
    p.add_argument("collection")
    p.add_argument("query", nargs="?", help="text query (or use --image / --vector)")
    p.add_argument(
        "--image", metavar="PATH", help="search with an image (collections with an image model)"
    )
    p.add_argument(
        "--vector",
        metavar="JSON|FILE.npy",
        help="search with a vector: a JSON list '[0.1, 0.2, ...]' or a .npy file "
        "(one vector, or a matrix with --row)",
    )
    p.add_argument("--row", type=non_negative_int, help="row of a 2-D --vector .npy file (from 0)")
    p.add_argument("-k", type=positive_int, default=10, help="hits to return (default 10)")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="payload must have KEY equal to VALUE (JSON or string); repeatable",
    )
    p.add_argument(
        "--nprobe",
        type=non_negative_int,
        default=0,
        help="partitions to probe (partitioned index; 0: the collection's default)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = add_remote(sub.add_parser("embed", help="embed texts with a served model"))
    p.add_argument("texts", nargs="+")
    p.add_argument("--model", default="")
    p.add_argument("--role", default="query", choices=("query", "document"))
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--dimensions", type=non_negative_int, default=0, help="truncate to N (0: full)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_embed)

    p = add_remote(sub.add_parser("get", help="fetch records by id"))
    p.add_argument("collection")
    p.add_argument("ids", nargs="+")
    p.set_defaults(func=cmd_get)

    p = add_remote(sub.add_parser("delete", help="delete records by id"))
    p.add_argument("collection")
    p.add_argument("ids", nargs="+")
    p.set_defaults(func=cmd_delete)


def cmd_upsert(args: argparse.Namespace) -> int:
    """``veclink upsert``: check the whole file, then stream it in batches with a bar."""
    from tqdm import tqdm

    from veclink.errors import VeclinkError

    path = Path(args.file)
    total = sum(1 for _ in numbered_records(path, load_images=False))  # checks the whole file
    lines: list[list[int]] = []  # the file line of every record sent, per batch
    with (
        client(args) as c,
        tqdm(total=total, desc=f"upsert {path.name}", unit="rec", disable=args.quiet) as bar,
    ):
        c.get_collection(args.collection)

        def batches() -> Iterator[list[dict[str, Any]]]:
            for batch in batched(numbered_records(path), args.batch_size):
                lines.append([line for line, _ in batch])
                yield [record for _, record in batch]
                bar.update(len(batch))

        try:
            n = c.upsert_stream(args.collection, batches())
        except VeclinkError as exc:
            located = locate_batch_error(str(exc), path, lines)
            if located == str(exc):
                raise
            raise type(exc)(located) from exc
    print(f"upserted {n} records into {args.collection!r}")
    return 0


def _parse_filter(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"--filter {item!r}: use KEY=VALUE", field="filter")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def query_vector(text: str, row: int | None) -> np.ndarray:
    """``--vector``: a JSON list of numbers, or a ``.npy`` file (a vector, or ``row`` of a
    matrix), as float32.

    Raises:
        InvalidArgument: unreadable, not numeric, not one vector, or ``row`` out of range.
    """
    import numpy as np

    if text.lower().endswith(".npy"):
        try:
            array = np.load(text, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"--vector {text}: cannot read: {exc}", field="vector") from exc
        if array.ndim == 2:
            if row is None and len(array) != 1:
                raise InvalidArgument(
                    f"--vector {text} holds {len(array)} vectors; pick one with --row "
                    f"(0..{len(array) - 1})",
                    field="row",
                )
            row = row or 0
            if row >= len(array):
                raise InvalidArgument(
                    f"--row {row}: {text} has {len(array)} rows (0..{len(array) - 1})",
                    field="row",
                )
            array = array[row]
        elif row is not None:
            raise InvalidArgument(f"--row: {text} holds one vector, not a matrix", field="row")
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.number):
            raise InvalidArgument(
                f"--vector {text}: needs a numeric vector or matrix, got shape "
                f"{array.shape} of {array.dtype}",
                field="vector",
            )
        return array.astype(np.float32)
    if row is not None:
        raise InvalidArgument("--row goes with a .npy --vector file", field="row")
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"--vector: give a JSON list like '[0.1, 0.2]' or a .npy file; cannot read {text!r}",
            field="vector",
        ) from exc
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    ):
        raise InvalidArgument("--vector: needs a non-empty JSON list of numbers", field="vector")
    return np.asarray(values, dtype=np.float32)


def cmd_search(args: argparse.Namespace) -> int:
    """``veclink search``: by text, ``--image`` or ``--vector``; ranked hits or JSON."""
    given = [args.query is not None, args.image is not None, args.vector is not None]
    if sum(given) != 1:
        raise InvalidArgument(
            "give one of: a text query, --image PATH or --vector JSON|FILE.npy", field="query"
        )
    if args.row is not None and args.vector is None:
        raise InvalidArgument("--row goes with a .npy --vector file", field="row")
    image = vector = None
    if args.image is not None:
        from veclink.encoders.images import read_image_file

        image = read_image_file(args.image)
    if args.vector is not None:
        vector = query_vector(args.vector, args.row)
    with client(args) as c:
        hits = c.search(
            args.collection,
            text=args.query,
            image=image,
            vector=vector,
            k=args.k,
            filter=_parse_filter(args.filter),
            nprobe=args.nprobe,
        )
    if args.json:
        print(
            json.dumps(
                [
                    {"id": h.id, "score": round(h.score, 6), "text": h.text, "payload": h.payload}
                    for h in hits
                ],
                indent=2,
            )
        )
    elif not hits:
        print("no results")
    else:
        for rank, h in enumerate(hits, 1):
            print(f"{rank:>3}. {h.score:.4f}  {h.id}  {h.text or ''}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """``veclink embed``: vectors of the texts from a served model."""
    with client(args) as c:
        vectors = c.embed(
            args.texts,
            model=args.model,
            role=args.role,
            normalize=args.normalize,
            dimensions=args.dimensions,
        )
    if args.json:
        print(
            json.dumps(
                [
                    {"text": t, "embedding": [round(float(x), 7) for x in v]}
                    for t, v in zip(args.texts, vectors, strict=True)
                ]
            )
        )
    else:
        for t, v in zip(args.texts, vectors, strict=True):
            head = " ".join(f"{x:+.4f}" for x in v[:6])
            print(f"dim={v.size}  [{head} ...]  {t}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    """``veclink get``: records by id, and the ids that are missing, as JSON."""
    with client(args) as c:
        records, missing = c.get(args.collection, args.ids)
    print(
        json.dumps(
            {
                "records": [{"id": r.id, "text": r.text, "payload": r.payload} for r in records],
                "missing": missing,
            },
            indent=2,
        )
    )
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """``veclink delete``: delete records by id."""
    with client(args) as c:
        n = c.delete(args.collection, args.ids)
    print(f"deleted {n} of {len(args.ids)} ids from {args.collection!r}")
    return 0
