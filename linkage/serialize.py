"""Field-aware serialisation: which columns, in what order, with or without their names.

The same spec serialises both sides, each through its own column mapping, so
``Abt.name`` and ``Buy.name`` land in the same place of the text that is embedded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from veclink.linkage.spec import FieldSpec, LinkageSpec
from veclink.linkage.tables import Table

if TYPE_CHECKING:  # align imports compare, which imports this module
    from veclink.linkage.align import Alignment


#: long text fields (type ``text``) of an automatic alignment are cut to this many characters
LONG_TEXT_MAX_CHARS = 200
#: values of unaligned columns are cut to this many characters
UNALIGNED_MAX_CHARS = 300


def resolve_fields(
    spec: LinkageSpec,
    left: Table,
    right: Table | None = None,
    alignment: Alignment | None = None,
) -> tuple[FieldSpec, ...]:
    """The fields a job compares: the spec's, else those of the column alignment.

    Without spec fields, each aligned pair becomes a field named after its left column,
    typed as the alignment inferred; long text fields are cut to `LONG_TEXT_MAX_CHARS` and
    come after the short fields, so they are embedded last. ``alignment`` defaults to
    `align_columns` of the two tables (names and content, no encoder), or every column with
    itself for one table (dedupe).
    """
    from veclink.linkage.align import align_columns, identity_alignment

    if spec.fields:
        return spec.fields
    if alignment is None:
        alignment = identity_alignment(left) if right is None else align_columns(left, right)
    fields = [
        FieldSpec(
            name=m.left,
            left=m.left,
            right=None if m.right == m.left else m.right,
            type=m.type,
            max_chars=LONG_TEXT_MAX_CHARS if m.type == "text" else FieldSpec.max_chars,
        )
        for m in alignment.matches
    ]
    return tuple(sorted(fields, key=lambda f: f.type == "text"))


def unaligned_columns(fields: Sequence[FieldSpec], table: Table, side: str) -> tuple[str, ...]:
    """Non-id columns of ``table`` that no field uses on ``side`` (``left`` / ``right``)."""
    used = {f.left_column if side == "left" else f.right_column for f in fields}
    return tuple(c for c in table.columns if c not in used)


def check_fields(fields: Sequence[FieldSpec], left: Table, right: Table | None) -> list[str]:
    """Problems with field columns missing from either table (all of them)."""
    problems = []
    for f in fields:
        if f.left_column not in left.columns:
            problems.append(
                f"field {f.name!r}: column {f.left_column!r} not in {left.name} "
                f"(columns: {list(left.columns)!r})"
            )
        if right is not None and f.right_column not in right.columns:
            problems.append(
                f"field {f.name!r}: column {f.right_column!r} not in {right.name} "
                f"(columns: {list(right.columns)!r})"
            )
    return problems


def field_values(table: Table, field: FieldSpec, side: str) -> list[str | None]:
    """Values of ``field`` in ``table`` (``side``: ``left`` or ``right``), cut to max_chars."""
    column = field.left_column if side == "left" else field.right_column
    return [None if v is None else v[: field.max_chars] for v in table.column(column)]


def serialize(
    table: Table,
    fields: Sequence[FieldSpec],
    side: str,
    style: str = "plain",
    extra: Sequence[str] = (),
) -> list[str]:
    """One text per record from the ``embed`` fields in field order, then ``extra`` columns.

    ``plain`` joins the present values with ``", "``; ``labeled`` writes ``name: value``
    pairs joined with ``"; "``. ``extra`` columns (unaligned ones) follow the fields, each
    value cut to `UNALIGNED_MAX_CHARS`, labelled with their normalised column name. A record
    with no value at all becomes its id, so that every record has a non-empty text to embed.
    """
    from veclink.linkage.align import name_tokens

    cols = [(f.name, field_values(table, f, side)) for f in fields if f.embed]
    for c in extra:
        label = " ".join(name_tokens(c)) or c
        cols.append(
            (label, [None if v is None else v[:UNALIGNED_MAX_CHARS] for v in table.column(c)])
        )
    texts = []
    for i, rid in enumerate(table.ids):
        if style == "labeled":
            parts = [f"{name}: {vals[i]}" for name, vals in cols if vals[i]]
            text = "; ".join(parts)
        else:
            text = ", ".join(str(vals[i]) for _, vals in cols if vals[i])
        texts.append(text or rid)
    return texts


def serialize_record(
    record: dict[str, object],
    fields: Sequence[FieldSpec],
    side: str,
    style: str = "plain",
    extra: Sequence[str] = (),
) -> str:
    """Serialise one record given as a dict (the incremental path)."""
    data: dict[str, tuple[str | None, ...]] = {}
    for k, v in record.items():
        text = None if v is None else str(v).strip()
        data[k] = (text or None,)
    for f in fields:
        data.setdefault(f.left_column if side == "left" else f.right_column, (None,))
    for c in extra:
        data.setdefault(c, (None,))
    table = Table(name="record", id_column="", ids=("record",), columns=tuple(data), data=data)
    return serialize(table, fields, side, style, extra)[0]
