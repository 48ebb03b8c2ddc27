"""Incremental matching: one record at a time against what is already indexed.

A `Matcher` reuses the fitted parts of a finished job (`LinkModel`: encoder, lexical IDF,
comparator, classifier, threshold), so a record gets the candidates, features and score
it would have had in the batch job:

- candidates: its adaptive kNN in the reference index, plus every reference record whose
  own batch kNN radius it falls inside (the reverse direction of batch blocking), plus
  exact-key matches;
- link jobs with ``one_to_one``: a reference record holds at most one incoming record;
  a better-scoring newcomer takes it over and the previous holder moves on to its next
  candidate (deferred acceptance), which ends in the same stable matching as the batch
  job's best-first assignment;
- dedupe jobs: the record joins the best entity above the threshold, or starts one, and
  is added to the index so later records can match it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from veclink.linkage.blocking import IndexFactory, default_index_factory, key_values
from veclink.linkage.model import LinkModel, Views
from veclink.linkage.tables import Table

from veclink.errors import InvalidArgument

if TYPE_CHECKING:
    from veclink.linkage.results import DedupeResult, LinkResult


@dataclasses.dataclass(frozen=True)
class MatchCandidate:
    entity_id: str
    record_id: str
    score: float


@dataclasses.dataclass(frozen=True)
class MatchResult:
    record_id: str
    #: best first, at most ``k``
    candidates: list[MatchCandidate]
    #: the entity the record was assigned to, or None
    assigned_entity_id: str | None


class Matcher:
    """Matches incoming records against a reference table indexed in a `VectorIndex`."""

    def __init__(
        self,
        model: LinkModel,
        reference: Table,
        views: Views,
        entity_of: list[str],
        *,
        mode: str,
        cutoffs: np.ndarray | None = None,
        index_factory: IndexFactory = default_index_factory,
    ) -> None:
        if mode not in ("link", "dedupe"):
            raise InvalidArgument(f"mode must be link or dedupe, got {mode!r}", field="mode")
        self.model = model
        self.spec = model.spec
        self.mode = mode
        self.side = "right" if mode == "link" else "left"  # columns of the reference records
        self.ids: list[str] = list(reference.ids)
        self.id_column = reference.id_column
        self.columns = list(reference.columns)
        self.data: dict[str, list[str | None]] = {
            c: list(reference.column(c)) for c in self.columns
        }
        self.views = Views(
            list(views.texts),
            list(views.full_texts),
            views.semantic.copy(),
            None if views.lexical is None else views.lexical.copy(),
        )
        self.entity_of = list(entity_of)
        self.cutoffs = (
            np.full(len(self.ids), np.inf, np.float32)
            if cutoffs is None
            else np.asarray(cutoffs, np.float32).copy()
        )
        vecs = self.views.blocking(self.spec.blocking)
        self.index = index_factory(self.spec.blocking.index_kind, vecs.shape[1], "ip")
        self.index.add(np.arange(len(self.ids), dtype=np.int64), vecs)  # type: ignore[attr-defined]
        self._key_blocks = self._build_key_blocks()
        # link + one_to_one state
        self.claims: dict[int, tuple[str, float]] = {}
        self.assigned: dict[str, int] = {}
        self.options: dict[str, list[tuple[float, int]]] = {}
        self.position = {rid: i for i, rid in enumerate(self.ids)}

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_link(
        cls, result: LinkResult, *, index_factory: IndexFactory = default_index_factory
    ) -> Matcher:
        """Match records like the job's left table against its right table."""
        entity_of = [f"right:{rid}" for rid in result.right.ids]
        return cls(
            result.model,
            result.right,
            result.right_views,
            entity_of,
            mode="link",
            cutoffs=result.candidates.right_cutoff,
            index_factory=index_factory,
        )

    @classmethod
    def from_dedupe(
        cls, result: DedupeResult, *, index_factory: IndexFactory = default_index_factory
    ) -> Matcher:
        """Match new records against the job's entities; assigned records join the index."""
        return cls(
            result.model,
            result.table,
            result.views,
            result.entity_ids(),
            mode="dedupe",
            cutoffs=result.candidates.left_cutoff,
            index_factory=index_factory,
        )

    # ----------------------------------------------------------------------- matching

    def match(
        self,
        record: Mapping[str, Any],
        *,
        record_id: str | None = None,
        k: int = 5,
        assign: bool = True,
    ) -> MatchResult:
        """Score ``record`` against the reference; assign it above the threshold.

        Args:
            record: column -> value, in the columns of the job's left table.
            record_id: its id (default: the value of the id column in ``record``).
            k: candidate entities to return.
            assign: record the assignment (and, for dedupe, add the record to the index).

        Raises:
            InvalidArgument: no id, an id already matched (dedupe: already indexed), k < 1.
        """
        if k < 1:
            raise InvalidArgument("k must be >= 1", field="k")
        rid = record_id if record_id is not None else record.get(self.spec.left_id)
        if rid is None or not str(rid).strip():
            raise InvalidArgument(f"the record has no id ({self.spec.left_id!r})", field="record")
        rid = str(rid).strip()
        if assign and (rid in self.options or (self.mode == "dedupe" and rid in self.position)):
            raise InvalidArgument(f"record {rid!r} was already matched", field="record")
        columns = [f.left_column for f in self.model.fields] + list(self.model.unaligned[0])
        query = _one_row_table(record, rid, self.spec.left_id, columns)
        qv = self.model.views(query, "left")
        rows = self._candidates(query, qv)
        scores = self._score(query, qv, rows)
        order = np.argsort(-scores, kind="stable")
        rows, scores = rows[order], scores[order]
        assigned: str | None = None
        if self.mode == "link":
            options = [
                (float(s), int(r))
                for s, r in zip(scores, rows, strict=True)
                if s >= self.model.threshold
            ]
            if assign:
                self.options[rid] = options
                # a right record holds at most one incoming record unless it repeats entities
                if self.model.assignment in ("one_to_one", "one_to_many"):
                    row = self._place(rid)
                else:
                    row = options[0][1] if options else None
                    if row is not None:
                        self.assigned[rid] = row
                assigned = None if row is None else self.entity_of[row]
        else:
            assigned = self._dedupe_assign(rid, query, qv, rows, scores, assign)
        cands = self._entity_candidates(rows, scores, k)
        return MatchResult(rid, cands, assigned)

    def assignment(self, record_id: str) -> str | None:
        """Current entity of an incoming (link) record; may change when it is bumped."""
        row = self.assigned.get(record_id)
        return None if row is None else self.entity_of[row]

    def assignments(self) -> dict[str, str]:
        return {rid: self.entity_of[row] for rid, row in self.assigned.items()}

    # ----------------------------------------------------------------------- internals

    def _candidates(self, query: Table, qv: Views) -> np.ndarray:
        spec = self.spec.blocking
        vec = qv.blocking(spec)
        n = len(self.ids)
        k = min(n, max(spec.k * 3, spec.k + 10))
        if k == 0:
            return np.zeros(0, np.int64)
        scores, ids = self.index.search(vec, k)  # type: ignore[attr-defined]
        s, i = scores[0], ids[0]
        valid = i >= 0
        forward = valid & ((s >= s[0] - spec.margin) | (np.arange(len(s)) < spec.min_k))
        forward &= np.arange(len(s)) < spec.k
        reverse = valid & (s >= self.cutoffs[np.where(valid, i, 0)])
        rows = set(i[forward | reverse].tolist())
        for key_index, blocks in enumerate(self._key_blocks):
            for value in self._record_keys(query, key_index):
                rows.update(blocks.get(value, ()))
        return np.array(sorted(rows), dtype=np.int64)

    def _score(self, query: Table, qv: Views, rows: np.ndarray) -> np.ndarray:
        if rows.size == 0:
            return np.zeros(0)
        ref = self._subset(rows)
        rv = Views(
            [self.views.texts[r] for r in rows],
            [self.views.full_texts[r] for r in rows],
            self.views.semantic[rows],
            None if self.views.lexical is None else self.views.lexical[rows],
        )
        zeros = np.zeros(len(rows), np.int64)
        if self.mode == "dedupe":
            # compare through the left columns on both sides, as the dedupe job did
            feats = self.model.comparator.compare(  # type: ignore[union-attr]
                query,
                ref,
                zeros,
                np.arange(len(rows)),
                left_texts=qv.full_texts,
                right_texts=rv.full_texts,
                left_views=(qv.semantic, qv.lexical),
                right_views=(rv.semantic, rv.lexical),
                right_side="left",
            )
        else:
            feats = self.model.features(query, ref, qv, rv, zeros, np.arange(len(rows)))
        return self.model.score(feats)

    def _place(self, rid: str) -> int | None:
        """Deferred acceptance: give ``rid`` its best free-or-weaker-held option."""
        moving: str | None = rid
        while moving is not None:
            options = self.options.get(moving, [])
            self.assigned.pop(moving, None)
            nxt = None
            for s, row in options:
                holder = self.claims.get(row)
                if holder is None or (holder[0] != moving and s > holder[1]):
                    if holder is not None:
                        nxt = holder[0]
                        self.assigned.pop(nxt, None)
                        # the bumped record never reclaims this row
                        self.options[nxt] = [o for o in self.options[nxt] if o[1] != row]
                    self.claims[row] = (moving, s)
                    self.assigned[moving] = row
                    break
            moving = nxt
        return self.assigned.get(rid)

    def _dedupe_assign(
        self, rid: str, query: Table, qv: Views, rows: np.ndarray, scores: np.ndarray, assign: bool
    ) -> str | None:
        above = scores >= self.model.threshold
        entity = self.entity_of[int(rows[above][0])] if above.any() else None
        if not assign:
            return entity
        entity = entity or rid
        self._add(rid, query, qv, entity, scores)
        return entity

    def _add(self, rid: str, query: Table, qv: Views, entity: str, scores: np.ndarray) -> None:
        row = len(self.ids)
        self.ids.append(rid)
        self.position[rid] = row
        for c in self.columns:
            self.data[c].append(query.column(c)[0] if c in query.data else None)
        self.views.extend(qv)
        self.entity_of.append(entity)
        spec = self.spec.blocking
        kept = np.sort(scores)[::-1][: spec.k]
        self.cutoffs = np.append(self.cutoffs, np.float32(kept[-1]) if kept.size else np.inf)
        self.index.add(np.array([row], np.int64), qv.blocking(spec))  # type: ignore[attr-defined]
        for key_index, blocks in enumerate(self._key_blocks):
            for value in self._record_keys(query, key_index):
                blocks.setdefault(value, []).append(row)

    def _entity_candidates(
        self, rows: np.ndarray, scores: np.ndarray, k: int
    ) -> list[MatchCandidate]:
        out: list[MatchCandidate] = []
        seen: set[str] = set()
        for r, s in zip(rows.tolist(), scores.tolist(), strict=True):
            ent = self.entity_of[r]
            if ent in seen:
                continue
            seen.add(ent)
            out.append(MatchCandidate(ent, self.ids[r], float(s)))
            if len(out) >= k:
                break
        return out

    def _subset(self, rows: np.ndarray) -> Table:
        idx = rows.tolist()
        return Table(
            name="reference",
            id_column=self.id_column,
            ids=tuple(self.ids[i] for i in idx),
            columns=tuple(self.columns),
            data={c: tuple(self.data[c][i] for i in idx) for c in self.columns},
        )

    def _build_key_blocks(self) -> list[dict[str, list[int]]]:
        blocks: list[dict[str, list[int]]] = []
        by_name = {f.name: f for f in self.model.fields}
        for key in self.spec.blocking.keys:
            cols = [
                by_name[n].right_column if self.side == "right" else by_name[n].left_column
                for n in key
            ]
            values = key_values([self.data[c] for c in cols], [by_name[n].type for n in key])
            b: dict[str, list[int]] = {}
            for row, vals in enumerate(values):
                for v in vals:
                    b.setdefault(v, []).append(row)
            blocks.append(
                {v: r for v, r in b.items() if len(r) <= self.spec.blocking.max_key_block}
            )
        return blocks

    def _record_keys(self, query: Table, key_index: int) -> set[str]:
        by_name = {f.name: f for f in self.model.fields}
        key = self.spec.blocking.keys[key_index]
        cols = [by_name[n].left_column for n in key]
        return key_values(
            [query.column(c) if c in query.data else (None,) for c in cols],
            [by_name[n].type for n in key],
        )[0]


def _one_row_table(
    record: Mapping[str, Any], rid: str, id_column: str, columns: list[str]
) -> Table:
    data: dict[str, tuple[str | None, ...]] = {}
    for k, v in record.items():
        if k == id_column:
            continue
        text = None if v is None else str(v).strip()
        data[str(k)] = (text or None,)
    for c in columns:  # a field the record lacks is missing, not an error
        data.setdefault(c, (None,))
    return Table(name="record", id_column=id_column, ids=(rid,), columns=tuple(data), data=data)
