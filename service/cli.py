"""The ``veclink`` command line: run the server, and talk to one.

veclink serve [--data-dir D] [--host H] [--port P] [--demo]
veclink collection create|list|get|delete ...
veclink upsert COLLECTION FILE        (JSONL or CSV: id, text, other columns -> payload)
veclink search COLLECTION "query" -k 5 [--json]   (or --image PATH)
veclink embed "text" ... [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from veclink.errors import InvalidArgument, VeclinkError

DEFAULT_SERVER = "127.0.0.1:50051"


def _client(args: argparse.Namespace) -> Any:
    from veclink.client import Client

    return Client(args.server, api_key=args.api_key)


# --------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    from veclink.service.server import build_store, serve_forever
    from veclink.service.settings import load_settings

    overrides: dict[str, dict[str, Any]] = {"server": {}, "storage": {}}
    if args.host:
        overrides["server"]["host"] = args.host
    if args.port is not None:
        overrides["server"]["port"] = args.port
    if args.data_dir:
        overrides["storage"]["data_dir"] = args.data_dir
    if args.database_url:
        overrides["storage"]["database_url"] = args.database_url
    if args.index_kind:
        overrides["storage"]["default_index_kind"] = args.index_kind
    settings = load_settings(args.config, overrides=overrides)
    logging.basicConfig(
        level=os.environ.get("VECLINK_LOG_LEVEL", "INFO"),
        format='{"time": "%(asctime)s", "level": "%(levelname)s", "logger": "%(name)s", '
        '"message": "%(message)s"}',
    )
    store = build_store(settings)
    store.models.get("")  # load the default model before accepting calls
    if args.demo:
        from veclink.service.demo import load_demo

        load_demo(store)
    asyncio.run(serve_forever(settings, store))
    return 0


# --------------------------------------------------------------------------- collections


def _print_collection(info: Any, as_json: bool) -> None:
    data = {
        "name": info.name,
        "model": info.model,
        "dimensions": info.dim,
        "metric": info.metric,
        "index_kind": info.index_kind,
        "count": info.count,
        "created_at": info.created_at.isoformat(),
    }
    if info.index_stats:
        data["index_stats"] = info.index_stats
    if as_json:
        print(json.dumps(data))
    else:
        print("  ".join(f"{k}={v}" for k, v in data.items()))


def cmd_collection(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.action == "create":
            info = c.create_collection(
                args.name,
                model=args.model
                if args.model is not None
                else ("" if args.dim else "all-MiniLM-L6-v2"),
                dimensions=args.dim or 0,
                metric=args.metric,
                index_kind=args.index_kind or "",
                index_options=json.loads(args.index_options) if args.index_options else None,
            )
            _print_collection(info, args.json)
        elif args.action == "list":
            for info in c.list_collections():
                _print_collection(info, args.json)
        elif args.action == "get":
            _print_collection(c.get_collection(args.name), args.json)
        elif args.action == "delete":
            c.delete_collection(args.name)
            print(f"deleted collection {args.name!r}")
    return 0


# --------------------------------------------------------------------------- upsert


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


def _batched(it: Iterator[dict[str, Any]], n: int) -> Iterator[list[dict[str, Any]]]:
    while batch := list(itertools.islice(it, n)):
        yield batch


def cmd_upsert(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    path = Path(args.file)
    total = sum(1 for _ in read_records(path, load_images=False))  # checks the whole file first
    with _client(args) as c, tqdm(total=total, desc=f"upsert {path.name}", unit="rec") as bar:
        c.get_collection(args.collection)

        def batches() -> Iterator[list[dict[str, Any]]]:
            for batch in _batched(read_records(path), args.batch_size):
                yield batch
                bar.update(len(batch))

        n = c.upsert_stream(args.collection, batches())
    print(f"upserted {n} records into {args.collection!r}")
    return 0


# --------------------------------------------------------------------------- search / embed


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
    with _client(args) as c:
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
    with _client(args) as c:
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
    with _client(args) as c:
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
    with _client(args) as c:
        n = c.delete(args.collection, args.ids)
    print(f"deleted {n} of {len(args.ids)} ids from {args.collection!r}")
    return 0


# --------------------------------------------------------------------------- parser


# --------------------------------------------------------------------------- linkage


def _table_rows(path: str, id_column: str, encoding: str) -> list[dict[str, Any]]:
    from veclink.linkage import read_table

    table = read_table(path, id_column=id_column, encoding=encoding)
    return [{id_column: rid, **table.record(i)} for i, rid in enumerate(table.ids)]


def cmd_linkage_remote(args: argparse.Namespace, *, dedupe: bool) -> int:
    """Run ``link`` / ``dedupe`` as a job on a server: tables are read here and sent inline."""
    from tqdm import tqdm
    from veclink.linkage.cli import build_spec

    unsupported = [
        flag
        for flag, on in (
            ("--labels", args.labels),
            ("--ask", args.ask),
            ("--report", args.report),
            ("--database", args.database),
        )
        if on
    ]
    if unsupported:
        raise InvalidArgument(
            f"{', '.join(unsupported)} run in-process only; drop --server to use them",
            field="server",
        )
    spec = build_spec(args, dedupe=dedupe)
    left_id = str(spec.get("left_id") or "id")
    with _client(args) as c:
        if dedupe:
            job_id = c.start_job(
                "dedupe", _table_rows(args.table, left_id, args.encoding), spec=spec
            )
        else:
            right_id = str(spec.get("right_id") or left_id)
            job_id = c.start_job(
                "link",
                _table_rows(args.left, left_id, args.encoding),
                _table_rows(args.right, right_id, args.encoding),
                spec=spec,
            )
        print(f"started job {job_id}", file=sys.stderr)
        with tqdm(total=100, desc="job", unit="%", disable=args.quiet) as bar:
            final: dict[str, Any] = {}
            for final in c.watch_job(job_id):
                bar.set_description(final["stage"] or final["state"])
                bar.n = round(100 * final["progress"])
                bar.refresh()
        if final.get("state") != "succeeded":
            raise InvalidArgument(
                f"job {job_id} {final.get('state')}: {final.get('error')}", field="job"
            )
        pairs, entities = c.job_results(job_id)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if dedupe:
            writer.writerow(["id", "entity_id"])
            writer.writerows(entities)
        else:
            writer.writerow(["left_id", "right_id", "score"])
            writer.writerows((a, b, f"{s:.6f}") for a, b, s in pairs)
    print(
        f"wrote {len(entities) if dedupe else len(pairs)} rows to {args.out} (job {job_id})",
        file=sys.stderr,
    )
    return 0


def _add_linkage(sub: Any) -> None:
    from veclink.linkage import cli as linkage_cli

    linkage_cli.add_subcommands(sub)
    for name in ("link", "dedupe"):
        p = sub.choices[name]
        p.add_argument(
            "--server",
            default=None,
            help="run as a job on this veclink server (host:port) instead of in-process",
        )
        p.add_argument("--api-key", default=os.environ.get("VECLINK_API_KEY"))
        local = p.get_default("func")

        def dispatch(
            args: argparse.Namespace, local: Any = local, dedupe: bool = name == "dedupe"
        ) -> int:
            if args.server:
                return cmd_linkage_remote(args, dedupe=dedupe)
            return int(local(args))

        p.set_defaults(func=dispatch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="veclink", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def remote(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--server",
            default=os.environ.get("VECLINK_SERVER", DEFAULT_SERVER),
            help=f"host:port of a veclink server (default {DEFAULT_SERVER})",
        )
        p.add_argument(
            "--api-key",
            default=os.environ.get("VECLINK_API_KEY"),
            help="API key (default: $VECLINK_API_KEY)",
        )
        return p

    p = sub.add_parser("serve", help="run the gRPC server")
    p.add_argument("--config", help="TOML settings file (env VECLINK__SECTION__KEY overrides it)")
    p.add_argument("--data-dir", help="catalog and indexes (default ./veclink-data)")
    p.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 50051)")
    p.add_argument(
        "--database-url", help="SQLAlchemy URL of the catalog (default SQLite in data dir)"
    )
    p.add_argument("--index-kind", choices=("flat", "partitioned"), help="default index kind")
    p.add_argument(
        "--demo",
        action="store_true",
        help="create the 'wordnet' demo collection (4,998 glosses) if it is missing",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("collection", help="create, list, get or delete collections")
    csub = p.add_subparsers(dest="action", required=True)
    c = remote(csub.add_parser("create"))
    c.add_argument("name")
    c.add_argument(
        "--model", help="served model (default all-MiniLM-L6-v2; '' with --dim for vectors only)"
    )
    c.add_argument("--dim", type=int, help="dimension of a vectors-only collection")
    c.add_argument("--metric", default="cosine", choices=("cosine", "ip", "l2"))
    c.add_argument("--index-kind", choices=("flat", "partitioned"))
    c.add_argument("--index-options", help="JSON object, e.g. '{\"split_limit\": 512}'")
    c.add_argument("--json", action="store_true")
    c = remote(csub.add_parser("list"))
    c.add_argument("--json", action="store_true")
    for action in ("get", "delete"):
        c = remote(csub.add_parser(action))
        c.add_argument("name")
        c.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_collection)

    p = remote(sub.add_parser("upsert", help="upsert records from a JSONL or CSV file"))
    p.add_argument("collection")
    p.add_argument(
        "file",
        help="JSONL (id, text | vector, payload...) or CSV (id, text, other columns -> payload)",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func=cmd_upsert)

    p = remote(sub.add_parser("search", help="search a collection with a text query"))
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

    p = remote(sub.add_parser("embed", help="embed texts with a served model"))
    p.add_argument("texts", nargs="+")
    p.add_argument("--model", default="")
    p.add_argument("--role", default="query", choices=("query", "document"))
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--dimensions", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_embed)

    p = remote(sub.add_parser("get", help="fetch records by id"))
    p.add_argument("collection")
    p.add_argument("ids", nargs="+")
    p.set_defaults(func=cmd_get)

    p = remote(sub.add_parser("delete", help="delete records by id"))
    p.add_argument("collection")
    p.add_argument("ids", nargs="+")
    p.set_defaults(func=cmd_delete)

    _add_linkage(sub)

    p = sub.add_parser("train", help="train encoders")
    tsub = p.add_subparsers(dest="what", required=True)
    from veclink.encoders.training import add_train_subcommand

    add_train_subcommand(tsub)
    from veclink.encoders.clip_training import add_train_subcommand as add_train_clip

    add_train_clip(tsub)

    p = sub.add_parser("eval", help="evaluate encoders")
    esub = p.add_subparsers(dest="what", required=True)
    from veclink.encoders.moee_eval import add_eval_subcommand

    add_eval_subcommand(esub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except VeclinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
