"""Record commands: ``veclink upsert``, ``search``, ``embed``, ``get`` and ``delete``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from veclink.cli.common import add_remote, client
from veclink.cli.records import batched, read_records

from veclink.errors import InvalidArgument


def add_parsers(sub: Any) -> None:
    """Register the record commands on the top-level sub-parsers."""
    p = add_remote(sub.add_parser("upsert", help="upsert records from a JSONL or CSV file"))
    p.add_argument("collection")
    p.add_argument(
        "file",
        help="JSONL (id, text | vector, payload...) or CSV (id, text, other columns -> payload)",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func=cmd_upsert)

    p = add_remote(sub.add_parser("search", help="search a collection with a text query"))
    p.add_argument("collection")
    p.add_argument("query", nargs="?", help="text query (or use --image)")
    p.add_argument(
        "--image", metavar="PATH", help="search with an image (collections with an image model)"
    )
    p.add_argument("-k", type=int, default=10)
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="payload must have KEY equal to VALUE (JSON or string); repeatable",
    )
    p.add_argument("--nprobe", type=int, default=0, help="partitions to probe (partitioned index)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = add_remote(sub.add_parser("embed", help="embed texts with a served model"))
    p.add_argument("texts", nargs="+")
    p.add_argument("--model", default="")
    p.add_argument("--role", default="query", choices=("query", "document"))
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--dimensions", type=int, default=0)
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
    from tqdm import tqdm

    path = Path(args.file)
    total = sum(1 for _ in read_records(path, load_images=False))  # checks the whole file first
    with client(args) as c, tqdm(total=total, desc=f"upsert {path.name}", unit="rec") as bar:
        c.get_collection(args.collection)

        def batches() -> Iterator[list[dict[str, Any]]]:
            for batch in batched(read_records(path), args.batch_size):
                yield batch
                bar.update(len(batch))

        n = c.upsert_stream(args.collection, batches())
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


def cmd_search(args: argparse.Namespace) -> int:
    if (args.query is None) == (args.image is None):
        raise InvalidArgument("give a text query or --image PATH (one of them)", field="query")
    image = None
    if args.image is not None:
        from veclink.encoders.images import read_image_file

        image = read_image_file(args.image)
    with client(args) as c:
        hits = c.search(
            args.collection,
            text=args.query,
            image=image,
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
    else:
        for rank, h in enumerate(hits, 1):
            print(f"{rank:>3}. {h.score:.4f}  {h.id}  {h.text or ''}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
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
    with client(args) as c:
        n = c.delete(args.collection, args.ids)
    print(f"deleted {n} of {len(args.ids)} ids from {args.collection!r}")
    return 0
