"""Labelled pairs: reading them, checking their ids, and turning them into training rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from veclink.linkage.tables import Table

from veclink.errors import InvalidArgument
from veclink.tabular import open_rows

_TRUE = {"1", "true", "yes", "y", "match", "t"}
_FALSE = {"0", "false", "no", "n", "nonmatch", "non-match", "f"}


@dataclasses.dataclass(frozen=True)
class LabelledPair:
    left_id: str
    right_id: str
    match: bool


def parse_label(value: object) -> bool | None:
    text = str(value).strip().lower() if value is not None else ""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def read_labels(path: str | Path, *, encoding: str | None = None) -> list[LabelledPair]:
    """Read ``left_id,right_id,label`` (label: 1/0, true/false, yes/no, match/non-match).

    The same left id may be labelled against several right ids, so ids need not be unique.

    Raises:
        InvalidArgument: missing columns or unreadable labels (all rows reported, by line).
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"labels file {str(path)!r} does not exist", field="labels")
    rows = open_rows(path, encoding=encoding, format="csv")
    header = list(rows.header)
    records = list(rows)
    if not records or "left_id" not in header:
        raise InvalidArgument(
            f"{path.name}: labels need a header left_id,right_id,label and at least one row; "
            f"header seen: {header!r}",
            field="labels",
        )
    missing = [c for c in ("right_id", "label") if c not in header]
    if missing:
        raise InvalidArgument(
            f"{path.name}: labels need columns left_id,right_id,label; "
            f"missing {', '.join(missing)}; header seen: {header!r}",
            field="labels",
        )
    bad = []
    out = []
    for line, record in records:
        left = (record.get("left_id") or "").strip()
        right = (record.get("right_id") or "").strip()
        lab = parse_label(record.get("label"))
        if lab is None or not right:
            bad.append(str(line))
            continue
        out.append(LabelledPair(left, right, lab))
    if bad:
        shown = ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise InvalidArgument(
            f"{path.name}: unreadable label or empty right_id on line(s) {shown} "
            "(labels: 1/0, true/false, yes/no, match/non-match)",
            field="labels",
        )
    return out


def check_labels(labels: Sequence[LabelledPair], left: Table, right: Table) -> list[str]:
    """Problems: labelled ids that are not in the tables (reported together)."""
    lpos, rpos = set(left.ids), set(right.ids)
    unknown_l = sorted({p.left_id for p in labels if p.left_id not in lpos})
    unknown_r = sorted({p.right_id for p in labels if p.right_id not in rpos})
    problems = []
    if unknown_l:
        problems.append(
            f"labels: {len(unknown_l)} left id(s) not in {left.name}: {', '.join(unknown_l[:5])}"
        )
    if unknown_r:
        problems.append(
            f"labels: {len(unknown_r)} right id(s) not in {right.name}: {', '.join(unknown_r[:5])}"
        )
    return problems


__all__ = ["LabelledPair", "check_labels", "parse_label", "read_labels"]
