"""``veclink collection create|list|get|delete``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from veclink.cli.common import add_remote, client, json_object, positive_int


def add_parser(sub: Any) -> None:
    """Register ``collection`` and its actions on the top-level sub-parsers."""
    p = sub.add_parser("collection", help="create, list, get or delete collections")
    csub = p.add_subparsers(dest="action", required=True)
    c = add_remote(csub.add_parser("create"))
    c.add_argument("name")
    c.add_argument(
        "--model", help="served model (default all-MiniLM-L6-v2; '' with --dim for vectors only)"
    )
    c.add_argument("--dim", type=positive_int, help="dimension of a vectors-only collection")
    c.add_argument("--metric", default="cosine", choices=("cosine", "ip", "l2"))
    c.add_argument("--index-kind", choices=("flat", "partitioned"))
    c.add_argument(
        "--index-options", type=json_object, help="JSON object, e.g. '{\"split_limit\": 512}'"
    )
    c.add_argument(
        "--shards",
        type=positive_int,
        help="spread the vectors over N shards (Ray actors when the server runs with --ray)",
    )
    c.add_argument("--json", action="store_true")
    c = add_remote(csub.add_parser("list"))
    c.add_argument("--json", action="store_true")
    for action in ("get", "delete"):
        c = add_remote(csub.add_parser(action))
        c.add_argument("name")
        c.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_collection)


def _print_collection(info: Any, as_json: bool) -> None:
    data = {
        "name": info.name,
        "model": info.model,
        "dimensions": info.dim,
        "metric": info.metric,
        "index_kind": info.index_kind,
        "shards": info.shards,
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
    """``veclink collection create|list|get|delete``."""
    with client(args) as c:
        if args.action == "create":
            info = c.create_collection(
                args.name,
                model=args.model
                if args.model is not None
                else ("" if args.dim else "all-MiniLM-L6-v2"),
                dimensions=args.dim or 0,
                metric=args.metric,
                index_kind=args.index_kind or "",
                index_options=args.index_options,
                shards=args.shards or 0,
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
