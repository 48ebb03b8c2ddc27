"""``veclink link|dedupe --server ...``: a linkage run as a job on a server.

The tables are read here and sent inline; the job's progress streams back.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from veclink.cli.common import client, need
from veclink.cli.linkage import add_subcommands, build_spec

from veclink.errors import InvalidArgument


def _table_rows(path: str, id_column: str, encoding: str) -> list[dict[str, Any]]:
    from veclink.linkage import read_table

    table = read_table(path, id_column=id_column, encoding=encoding)
    return [{id_column: rid, **table.record(i)} for i, rid in enumerate(table.ids)]


def cmd_linkage_remote(args: argparse.Namespace, *, dedupe: bool) -> int:
    """Run ``link`` / ``dedupe`` as a job on a server: tables are read here and sent inline."""
    from tqdm import tqdm

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
    with client(args) as c:
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
            final = None
            for final in c.watch_job(job_id):
                bar.set_description(final.stage or final.state)
                bar.n = round(100 * final.progress)
                bar.refresh()
        if final is None or final.state != "succeeded":
            state, error = (final.state, final.error) if final else ("sent no progress", "")
            raise InvalidArgument(f"job {job_id} {state}: {error}", field="job")
        pairs, entities = c.job_results(job_id)
    from veclink.tabular import write_entities_csv, write_pairs_csv

    if dedupe:
        n = write_entities_csv(args.out, entities)
    else:
        n = write_pairs_csv(args.out, pairs)
    print(f"wrote {n} rows to {args.out} (job {job_id})", file=sys.stderr)
    return 0


def check_before_run(args: argparse.Namespace, *, dedupe: bool) -> None:
    """What would fail only after the whole job ran, checked before it starts: the optional
    packages that Parquet inputs and ``--report`` need, and the folders written to.

    Raises:
        MissingDependency: a package is not installed.
        InvalidArgument: an output folder does not exist.
    """
    for table in [args.table] if dedupe else [args.left, args.right]:
        if Path(table).suffix.lower() in (".parquet", ".pq"):
            need("pyarrow", "linkage", f"the Parquet input {table}")
    if args.report and not args.server:  # with --server, --report is refused
        need("matplotlib", "linkage", "--report")
    for flag, out in (("--out", args.out), ("--report", args.report)):
        if out and not Path(out).resolve().parent.is_dir():
            raise InvalidArgument(
                f"{flag} {out}: folder {str(Path(out).parent)!r} does not exist", field=flag[2:]
            )


def add_parsers(sub: Any) -> None:
    """Register ``link`` and ``dedupe``: in-process, or as a job on a server with ``--server``."""
    add_subcommands(sub)
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
            check_before_run(args, dedupe=dedupe)
            if args.server:
                return cmd_linkage_remote(args, dedupe=dedupe)
            return int(local(args))

        p.set_defaults(func=dispatch)
