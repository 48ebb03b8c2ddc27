"""Field-aware serialisation: which columns, in what order, with or without their names.

The same spec serialises both sides, each through its own column mapping, so
``Abt.name`` and ``Buy.name`` land in the same place of the text that is embedded.
"""

from __future__ import annotations

from collections.abc import Sequence

from veclink.linkage.spec import FieldSpec, LinkageSpec
from veclink.linkage.tables import Table

from veclink.errors import InvalidArgument


def resolve_fields(
    spec: LinkageSpec, left: Table, right: Table | None = None
) -> tuple[FieldSpec, ...]:
    """The fields a job compares: the spec's, or every shared non-id column as ``string``."""
    if spec.fields:
        return spec.fields
    shared = [c for c in left.columns if right is None or c in right.columns]
    if not shared:
        raise InvalidArgument(
            "the tables share no column besides their ids; list fields in the spec "
            "(e.g. --fields title authors=writers)",
            field="spec.fields",
        )
    return tuple(FieldSpec(name=c) for c in shared)


def check_fields(fields: Sequence[FieldSpec], left: Table, right: Table | None) -> list[str]:
    """Problems with field columns missing from either table (all of them)."""
    problems = []
    for f in fields:
        if f.left_column not in left.columns:
            problems.append(
                f"field {f.name!r}: column {f.left_column!r} not in {left.name} "
                f"(columns: {', '.join(left.columns)})"
            )
        if right is not None and f.right_column not in right.columns:
            problems.append(
                f"field {f.name!r}: column {f.right_column!r} not in {right.name} "
                f"(columns: {', '.join(right.columns)})"
            )
    return problems


def field_values(table: Table, field: FieldSpec, side: str) -> list[str | None]:
    """Values of ``field`` in ``table`` (``side``: ``left`` or ``right``), cut to max_chars."""
    column = field.left_column if side == "left" else field.right_column
    return [None if v is None else v[: field.max_chars] for v in table.column(column)]


def serialize(
    table: Table, fields: Sequence[FieldSpec], side: str, style: str = "plain"
) -> list[str]:
    """One text per record from the ``embed`` fields, in field order.

    ``plain`` joins the present values with ``", "``; ``labeled`` writes ``name: value``
    pairs joined with ``"; "``. A record with no value at all becomes its id, so that
    every record has a non-empty text to embed.
    """
    cols = [(f, field_values(table, f, side)) for f in fields if f.embed]
    texts = []
    for i, rid in enumerate(table.ids):
        if style == "labeled":
            parts = [f"{f.name}: {vals[i]}" for f, vals in cols if vals[i]]
            text = "; ".join(parts)
        else:
            text = ", ".join(str(vals[i]) for _, vals in cols if vals[i])
        texts.append(text or rid)
    return texts


def serialize_record(
    record: dict[str, object], fields: Sequence[FieldSpec], side: str, style: str = "plain"
) -> str:
    """Serialise one record given as a dict (the incremental path)."""
    data: dict[str, tuple[str | None, ...]] = {}
    for k, v in record.items():
        text = None if v is None else str(v).strip()
        data[k] = (text or None,)
    for f in fields:
        data.setdefault(f.left_column if side == "left" else f.right_column, (None,))
    table = Table(name="record", id_column="", ids=("record",), columns=tuple(data), data=data)
    return serialize(table, fields, side, style)[0]
