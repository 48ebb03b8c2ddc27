"""``veclink link`` and ``veclink dedupe``: in-process linkage jobs with progress bars.

    veclink link LEFT RIGHT --out PAIRS.csv [--left-id COL] [--right-id COL] [--fields ...]
        [--precision TAU] [--labels LABELS.csv] [--encoding ENC] [--report REPORT.html]
        [--summary SUMMARY.json] [--assignment MODE]
    veclink dedupe TABLE --out CLUSTERS.csv [--id COL] [--fields ...] [...]

``--fields`` entries are ``NAME``, ``NAME:TYPE``, ``LEFTCOL=RIGHTCOL`` or
``LEFTCOL=RIGHTCOL:TYPE`` (types: text, string, name, code, number, date, category).
``--ask N`` asks you about up to N pairs in the terminal (active learning). The main CLI
registers these subcommands with `add_subcommands`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from veclink.cli.common import run_command

from veclink.errors import InvalidArgument


def parse_field(text: str) -> dict[str, Any]:
    """``NAME[:TYPE]`` or ``LEFT=RIGHT[:TYPE]`` -> a FieldSpec dict."""
    from veclink.linkage.spec import FIELD_TYPES

    body, _, ftype = text.partition(":")
    left, eq, right = body.partition("=")
    if not left or (eq and not right):
        raise InvalidArgument(
            f"--fields: cannot read {text!r} (use NAME, NAME:TYPE, LEFT=RIGHT or LEFT=RIGHT:TYPE)",
            field="fields",
        )
    field: dict[str, Any] = {"name": left}
    if eq:
        field["right"] = right
    if ftype:
        if ftype not in FIELD_TYPES:
            raise InvalidArgument(
                f"--fields: type {ftype!r} of {text!r} is not one of {', '.join(FIELD_TYPES)}",
                field="fields",
            )
        field["type"] = ftype
    return field


def build_spec(args: argparse.Namespace, *, dedupe: bool) -> dict[str, Any]:
    """The spec dict: ``--spec`` file first, then the flags on top."""
    spec: dict[str, Any] = {}
    if args.spec:
        try:
            spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidArgument(f"--spec {args.spec}: {exc}", field="spec") from exc
        if not isinstance(spec, dict):
            raise InvalidArgument(f"--spec {args.spec}: must hold a JSON object", field="spec")
    if dedupe:
        if args.id:
            spec["left_id"] = args.id
    else:
        if args.left_id:
            spec["left_id"] = args.left_id
        if args.right_id:
            spec["right_id"] = args.right_id
        if args.many_to_one:
            spec["assignment"] = "many_to_one"
        if args.assignment:
            spec["assignment"] = args.assignment
    if args.fields:
        spec["fields"] = [parse_field(f) for f in args.fields]
    if args.precision is not None:
        spec["precision"] = args.precision
    if args.threshold is not None:
        spec["threshold"] = args.threshold
    if args.memory_budget_mb is not None:
        spec["memory_budget_mb"] = args.memory_budget_mb
    return spec


class ProgressBars:
    """One tqdm bar per stage, driven by the pipeline's ``(stage, fraction)`` callback."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.stage = ""

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=100, desc=f"{stage:>8}", unit="%", file=sys.stderr, leave=True)
        target = int(round(fraction * 100))
        if self.bar is not None and target > self.bar.n:
            self.bar.update(target - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def terminal_ask(
    input_fn: Callable[[str], str] = input, out: Any = None
) -> Callable[[Any], bool | None]:
    """An active-learning ``ask`` that shows both records and reads y / n / s / q."""
    from veclink.linkage.active import StopLabelling

    def ask(q: Any) -> bool | None:
        stream = out or sys.stderr
        print(f"\n[{q.asked + 1}/{q.budget}] score {q.score:.3f}", file=stream)
        keys = list(dict.fromkeys([*q.left, *q.right]))
        width = max((len(k) for k in keys), default=4)
        print(
            f"  {'':{width}}  {'left ' + q.left_id:40.40}  {'right ' + q.right_id:40.40}",
            file=stream,
        )
        for k in keys:
            a, b = q.left.get(k) or "", q.right.get(k) or ""
            print(f"  {k:{width}}  {str(a):40.40}  {str(b):40.40}", file=stream)
        while True:
            answer = input_fn("same entity? [y]es / [n]o / [s]kip / [q]uit: ").strip().lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False
            if answer in ("s", "skip", ""):
                return None
            if answer in ("q", "quit"):
                raise StopLabelling

    return ask


# ------------------------------------------------------------------------------ commands


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fields",
        nargs="+",
        metavar="FIELD",
        help="compared fields: NAME, NAME:TYPE, LEFT=RIGHT or LEFT=RIGHT:TYPE",
    )
    p.add_argument(
        "--precision",
        type=float,
        metavar="TAU",
        help="precision target for the threshold (default 0.9); 0: no constraint, the "
        "threshold with the best estimated F1",
    )
    p.add_argument("--threshold", type=float, help="fixed score threshold instead")
    p.add_argument(
        "--memory-budget-mb",
        type=float,
        metavar="MIB",
        help="refuse the job up front when its estimated memory exceeds this "
        "(default: 90%% of the memory available)",
    )
    p.add_argument("--labels", metavar="LABELS.csv", help="labelled pairs: left_id,right_id,label")
    p.add_argument(
        "--ask",
        type=int,
        default=0,
        metavar="N",
        help="active learning: ask about up to N pairs in the terminal",
    )
    p.add_argument(
        "--encoding",
        default=None,
        help="encoding of CSV / JSONL inputs (default: detected per file: BOM, UTF-8, "
        "else cp1252 / latin-1)",
    )
    p.add_argument(
        "--summary",
        metavar="SUMMARY.json",
        help="write the job's summary as JSON: pairs or entities, threshold, estimated "
        "precision and interval, warnings, assignment, column alignment, stage times",
    )
    p.add_argument("--report", metavar="REPORT.html", help="write an HTML report")
    p.add_argument(
        "--gold",
        metavar="GOLD.csv",
        help="true pairs (first two columns) to evaluate against, in the report too",
    )
    p.add_argument("--spec", metavar="SPEC.json", help="a LinkageSpec JSON file (flags override)")
    p.add_argument("--database", metavar="URL", help="also save the job in this SQL database")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_subcommands(subparsers: Any) -> None:
    """Register ``link`` and ``dedupe`` on an argparse subparsers object."""
    p = subparsers.add_parser("link", help="link two tables: which left record is which right")
    p.add_argument("left", metavar="LEFT", help="CSV / TSV / JSONL / Parquet file")
    p.add_argument("right", metavar="RIGHT", help="CSV / TSV / JSONL / Parquet file")
    p.add_argument(
        "--out",
        required=True,
        metavar="PAIRS.csv",
        help="write accepted matches as left_id,right_id,score",
    )
    p.add_argument("--left-id", metavar="COL", help="id column of LEFT (default id)")
    p.add_argument("--right-id", metavar="COL", help="id column of RIGHT (default: --left-id)")
    p.add_argument(
        "--assignment",
        choices=("auto", "one_to_one", "one_to_many", "many_to_one", "many_to_many"),
        help="how records pair up (default auto: each side is checked for duplicates)",
    )
    p.add_argument(
        "--many-to-one",
        action="store_true",
        help="same as --assignment many_to_one (several left records per right record)",
    )
    _common(p)
    p.set_defaults(func=cmd_link)

    p = subparsers.add_parser("dedupe", help="cluster the records of one table into entities")
    p.add_argument("table", metavar="TABLE", help="CSV / TSV / JSONL / Parquet file")
    p.add_argument(
        "--out", required=True, metavar="CLUSTERS.csv", help="write id,entity_id for every record"
    )
    p.add_argument("--id", metavar="COL", help="id column (default id)")
    _common(p)
    p.set_defaults(func=cmd_dedupe)


def _labels(args: argparse.Namespace) -> list[Any]:
    if not args.labels:
        return []
    from veclink.linkage.labels import read_labels

    return read_labels(args.labels, encoding=args.encoding)


def _run(args: argparse.Namespace, *, dedupe: bool) -> int:
    from veclink.linkage import pipeline

    spec = build_spec(args, dedupe=dedupe)
    labels = _labels(args)
    if args.ask < 0:
        raise InvalidArgument("--ask must be >= 0", field="ask")
    bars = ProgressBars(enabled=not args.quiet)
    ask = terminal_ask() if args.ask else None
    kwargs: dict[str, Any] = dict(
        labels=labels, ask=ask, budget=args.ask, progress=bars, encoding=args.encoding
    )
    if getattr(args, "encoder", None) is not None:  # tests inject a tiny encoder
        kwargs["encoder"] = args.encoder
    if getattr(args, "index_factory", None) is not None:
        kwargs["index_factory"] = args.index_factory
    try:
        if dedupe:
            result = pipeline.dedupe(args.table, spec, **kwargs)
        else:
            result = pipeline.link(args.left, args.right, spec, **kwargs)
    finally:
        bars.close()
    n = result.write_csv(args.out)
    gold = None
    if args.gold:
        from veclink.linkage.evaluate import read_pairs

        gold = read_pairs(args.gold, encoding=args.encoding)
    if args.report:
        from veclink.linkage.report import write_report

        write_report(result, args.report, gold=gold)
    if args.database:
        _save(args, result, dedupe=dedupe)
    if args.summary:
        Path(args.summary).write_text(
            json.dumps(result.summary(), indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
    _summary(result, n, args, gold, dedupe=dedupe)
    return 0


def _save(args: argparse.Namespace, result: Any, *, dedupe: bool) -> None:
    from sqlalchemy import create_engine
    from veclink.linkage.store import LinkageStore

    engine = create_engine(args.database)
    try:
        store = LinkageStore(engine)
        if dedupe:
            job = store.create_job("dedupe", result.spec.to_dict(), left_source=args.table)
            store.save_dedupe_result(job, result)
        else:
            job = store.create_job(
                "link", result.spec.to_dict(), left_source=args.left, right_source=args.right
            )
            store.save_link_result(job, result)
    finally:
        engine.dispose()
    print(f"saved as job {job}", file=sys.stderr)


def _summary(result: Any, n: int, args: argparse.Namespace, gold: Any, *, dedupe: bool) -> None:
    c = result.choice
    what = (
        f"{int(result.entity.max()) + 1 if len(result.entity) else 0} entities"
        if dedupe
        else f"{n} pairs"
    )
    lo, hi = c.interval
    if result.spec.threshold is not None:
        target = "threshold given"
    elif result.spec.precision == 0:
        target = "best estimated F1, no precision target"
    else:
        target = f"target {result.spec.precision}: {'met' if c.target_met else 'NOT met'}"
    trust = "" if c.reliable else " -- NOT RELIABLE, see the warnings"
    print(
        f"wrote {what} to {args.out}; {result.mode}, {result.assignment.replace('_', '-')}, "
        f"threshold {c.threshold:.4g}, estimated precision {c.est_precision:.3f} "
        f"[{lo:.3f}, {hi:.3f}] ({target}){trust}, {len(result.candidates)} candidate pairs",
        file=sys.stderr,
    )
    alignment = getattr(result, "alignment", None)
    if alignment is not None and not dedupe:
        pairs = ", ".join(f"{m.left}={m.right} ({m.type})" for m in alignment.matches)
        print(f"columns aligned: {pairs or 'none'}", file=sys.stderr)
        for side, cols in (("left", alignment.left_only), ("right", alignment.right_only)):
            if cols:
                print(
                    f"  {side} only (compared as whole-record text): {', '.join(cols)}",
                    file=sys.stderr,
                )
        for note in alignment.notes:
            print(f"  note: {note}", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if gold is not None:
        from veclink.linkage.evaluate import cluster_pairs, pair_metrics

        if dedupe:
            m = pair_metrics(
                cluster_pairs(result.table.ids, result.entity_ids()), gold, symmetric=True
            )
        else:
            m = pair_metrics([(a, b) for a, b, _ in result.matches()], gold)
        print(
            f"against {args.gold}: precision {m.precision:.4f} recall {m.recall:.4f} F1 {m.f1:.4f}",
            file=sys.stderr,
        )


def cmd_link(args: argparse.Namespace) -> int:
    return _run(args, dedupe=False)


def cmd_dedupe(args: argparse.Namespace) -> int:
    return _run(args, dedupe=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m veclink.cli.linkage link ...``)."""
    parser = argparse.ArgumentParser(prog="veclink")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
