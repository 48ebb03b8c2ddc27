"""Inputs of a job: tables from many sources, checked together with the spec and labels."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from veclink.linkage.blocking import CandidatePairs
from veclink.linkage.labels import LabelledPair, check_labels
from veclink.linkage.serialize import check_fields
from veclink.linkage.spec import LinkageSpec
from veclink.linkage.tables import Table, read_table

from veclink.errors import InvalidArgument, VeclinkError

TableLike = Any  # Table | path | sequence of dicts | pandas.DataFrame


def as_table(obj: TableLike, *, id_column: str, name: str, encoding: str | None = None) -> Table:
    """Accept a `Table`, a file path, a list of dicts or a pandas DataFrame."""
    if isinstance(obj, Table):
        return obj
    if isinstance(obj, str | os.PathLike):
        return read_table(obj, id_column=id_column, encoding=encoding, name=name)
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # pandas, without importing it
        return Table.from_records(obj.to_dict("records"), id_column=id_column, name=name)
    if isinstance(obj, Sequence):
        return Table.from_records(list(obj), id_column=id_column, name=name)
    raise InvalidArgument(f"{name}: cannot read a table from {type(obj).__name__}", field=name)


def prepare_inputs(
    spec: LinkageSpec | Mapping[str, Any],
    left: TableLike,
    right: TableLike | None,
    *,
    labels: Sequence[LabelledPair] = (),
    encoding: str | None = None,
) -> tuple[LinkageSpec, Table, Table | None]:
    """Validate the spec, load the tables and check fields and labels; all problems at once."""
    problems: list[str] = []
    try:
        spec = LinkageSpec.from_dict(spec)  # type: ignore[arg-type]
    except InvalidArgument as exc:
        problems.append(str(exc))
        spec = None  # type: ignore[assignment]
    left_id = spec.left_id if spec else "id"
    right_id = spec.right_id_column if spec else "id"
    tables: list[Table | None] = []
    for obj, id_col, name in ((left, left_id, "left"), (right, right_id, "right")):
        if obj is None:
            tables.append(None)
            continue
        try:
            tables.append(as_table(obj, id_column=id_col, name=_name(obj, name), encoding=encoding))
        except VeclinkError as exc:  # InvalidArgument, NotFound
            problems.append(str(exc))
            tables.append(None)
    lt, rt = tables
    if spec is not None and lt is not None and (right is None or rt is not None):
        # without spec fields the job aligns the columns itself: nothing to check here
        problems += check_fields(spec.fields, lt, rt)
        if labels:
            problems += check_labels(labels, lt, rt if rt is not None else lt)
    if problems:
        raise InvalidArgument("; ".join(problems), field="input")
    return spec, lt, rt  # type: ignore[return-value]


def _name(obj: TableLike, default: str) -> str:
    if isinstance(obj, str | os.PathLike):
        return os.path.basename(os.fspath(obj))
    if isinstance(obj, Table):
        return obj.name
    return default


def label_rows(
    labels: Sequence[LabelledPair], left: Table, right: Table
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lp, rp = left.position(), right.position()
    a = np.array([lp[x.left_id] for x in labels], dtype=np.int64)
    b = np.array([rp[x.right_id] for x in labels], dtype=np.int64)
    y = np.array([int(x.match) for x in labels], dtype=np.int64)
    return a, b, y


def candidate_labels(
    candidates: CandidatePairs,
    labels: Sequence[LabelledPair],
    lt: Table,
    rt: Table,
    active: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Labelled pairs that are candidates, as (candidate rows, 0/1 labels)."""
    n_right = candidates.n_right
    where = {
        int(c): p for p, c in enumerate((candidates.left * n_right + candidates.right).tolist())
    }
    rows, ys = [], []
    if labels:
        a, b, y = label_rows(labels, lt, rt)
        for x, z, lab in zip(a.tolist(), b.tolist(), y.tolist(), strict=True):
            if candidates.dedupe and x > z:
                x, z = z, x
            p = where.get(x * n_right + z)
            if p is not None:
                rows.append(p)
                ys.append(lab)
    if active is not None:
        rows += active[0].tolist()
        ys += active[1].tolist()
    return np.asarray(rows, np.int64), np.asarray(ys, np.int64)
