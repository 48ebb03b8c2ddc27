"""Labelled pairs: reading them, checking their ids, and turning them into training rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from veclink.linkage.tables import Table, read_csv_rows

from veclink.errors import InvalidArgument

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

    Raises:
        InvalidArgument: missing columns or unreadable labels (all rows reported).
    """
    path = Path(path)
    table = _read(path, encoding)
    missing = [c for c in ("right_id", "label") if c not in table.columns]
    if missing:
        raise InvalidArgument(
            f"{path.name}: labels need columns left_id,right_id,label; "
            f"missing {', '.join(missing)}; header seen: {['left_id', *table.columns]!r}",
            field="labels",
        )
    bad = []
    out = []
    for i, rid in enumerate(table.ids):
        right = table.column("right_id")[i]
        lab = parse_label(table.column("label")[i])
        if lab is None or not right:
            bad.append(str(i + 2))
            continue
        out.append(LabelledPair(rid, right, lab))
    if bad:
        shown = ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise InvalidArgument(
            f"{path.name}: unreadable label or empty right_id on line(s) {shown} "
            "(labels: 1/0, true/false, yes/no, match/non-match)",
            field="labels",
        )
    return out


def _read(path: Path, encoding: str | None) -> Table:
    # the same left id may be labelled against several right ids, so ids here are not unique:
    # read through the plain CSV reader and build the table with a synthetic row id
    if not path.is_file():
        raise InvalidArgument(f"labels file {str(path)!r} does not exist", field="labels")
    raw_rows, _ = read_csv_rows(path, encoding=encoding)
    header = [h.strip() for h in raw_rows[0]] if raw_rows else []
    rows = [dict(zip(header, r, strict=False)) for r in raw_rows[1:] if any(c.strip() for c in r)]
    if not rows or "left_id" not in rows[0]:
        raise InvalidArgument(
            f"{path.name}: labels need a header left_id,right_id,label and at least one row; "
            f"header seen: {header!r}",
            field="labels",
        )
    return Table(
        name=path.name,
        id_column="left_id",
        ids=tuple((r.get("left_id") or "").strip() for r in rows),
        columns=tuple(k for k in rows[0] if k != "left_id"),
        data={
            k: tuple((r.get(k) or "").strip() or None for r in rows)
            for k in rows[0]
            if k != "left_id"
        },
    )


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
