"""Typed results of linkage jobs, and the stage timer that fills their ``stages``."""

from __future__ import annotations

import dataclasses
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from veclink.linkage.align import Alignment
from veclink.linkage.assumptions import SideDuplicates
from veclink.linkage.blocking import CandidatePairs, IndexFactory, default_index_factory
from veclink.linkage.compare import Features
from veclink.linkage.model import LinkModel, Progress, Views
from veclink.linkage.scoring import ThresholdChoice, ThresholdCurve
from veclink.linkage.spec import LinkageSpec
from veclink.linkage.tables import Table

from veclink.tabular import write_entities_csv, write_pairs_csv


@dataclasses.dataclass(frozen=True)
class StageStats:
    name: str
    seconds: float
    #: peak traced Python/numpy memory during the stage (None unless tracemalloc is on)
    peak_mb: float | None


class StageTimer:
    """Times stages (and traced peak memory when tracemalloc is on); drives progress."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.stats: list[StageStats] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[Callable[[float], None]]:
        """Time a stage; yields ``report(fraction)`` for progress inside it."""
        tracing = tracemalloc.is_tracing()
        if tracing:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
        progress = self.progress

        def report(fraction: float) -> None:
            if progress:
                progress(name, min(max(fraction, 0.0), 0.999))

        if progress:
            progress(name, 0.0)
        t0 = time.perf_counter()
        yield report
        seconds = time.perf_counter() - t0
        peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20 if tracing else None
        self.stats.append(StageStats(name, seconds, peak))
        if self.progress:
            self.progress(name, 1.0)


# ------------------------------------------------------------------------------ results


def _number(x: float | None) -> float | None:
    """A JSON-safe float: None for missing or non-finite values."""
    if x is None or not np.isfinite(x):
        return None
    return float(x)


def _summary(result: LinkResult | DedupeResult, tables: dict[str, Table]) -> dict[str, Any]:
    """What link and dedupe summaries share (see `LinkResult.summary`)."""
    choice = result.choice
    return {
        "records": {side: len(t) for side, t in tables.items()},
        "scoring": result.mode,
        "threshold": _number(choice.threshold),
        "threshold_given": result.spec.threshold is not None,
        "precision_target": result.spec.precision,
        "precision_target_met": bool(choice.target_met),
        "estimated_precision": _number(choice.est_precision),
        "estimated_precision_interval": [_number(x) for x in choice.interval],
        "estimate_reliable": bool(choice.reliable),
        "estimated_recall_among_candidates": _number(choice.est_recall),
        "assignment": result.assignment,
        "duplicate_checks": [d.to_dict() for d in result.duplicates],
        "warnings": list(result.warnings),
        "candidates": len(result.candidates),
        "fields": [
            {"name": f.name, "left": f.left_column, "right": f.right_column, "type": f.type}
            for f in result.model.fields
        ],
        "alignment": None if result.alignment is None else result.alignment.to_dict(),
        "inputs": {
            side: None if t.info is None else t.info.to_dict() for side, t in tables.items()
        },
        "stages": [
            {"name": s.name, "seconds": round(s.seconds, 3), "peak_mib": _number(s.peak_mb)}
            for s in result.stages
        ],
    }


@dataclasses.dataclass(kw_only=True)
class JobResult:
    """What link and dedupe jobs both produce: candidates, scores, the threshold chosen and
    what the estimates rest on."""

    spec: LinkageSpec
    model: LinkModel
    candidates: CandidatePairs
    features: Features
    scores: np.ndarray
    #: the best pair of every record
    selected: np.ndarray
    accepted: np.ndarray
    choice: ThresholdChoice
    curve: ThresholdCurve
    #: scores of known non-matches (alternatives of selected pairs); empty when supervised
    null_scores: np.ndarray
    mode: str  # "unsupervised" | "supervised"
    stages: list[StageStats]
    labels: tuple[np.ndarray, np.ndarray] | None = None
    #: candidate rows whose score blends in the LLM judge's answer
    judged_rows: np.ndarray | None = None
    #: what the user must be told about the estimates (broken assumptions, uncertainty)
    warnings: tuple[str, ...] = ()
    #: the duplicate check of each side (link jobs; see veclink.linkage.assumptions)
    duplicates: tuple[SideDuplicates, ...] = ()
    #: how records paired up: one_to_one, one_to_many, many_to_one, many_to_many, dedupe
    assignment: str = "one_to_one"
    #: the column alignment the fields came from (None when the spec listed the fields)
    alignment: Alignment | None = None

    @property
    def threshold(self) -> float:
        return self.choice.threshold

    def outcome(self) -> dict[str, Any]:
        """The job's own numbers in `metrics` (matches, or entities)."""
        return {}

    def metrics(self) -> dict[str, Any]:
        """The numbers a finished job reports (its ``metrics`` over the API)."""
        return {
            "mode": self.mode,
            "candidates": len(self.candidates),
            "reduction_ratio": self.candidates.reduction_ratio,
            "threshold": self.threshold,
            "estimated_precision": self.choice.est_precision,
            "precision_target": self.spec.precision,
            "precision_target_met": self.choice.target_met,
            **self.outcome(),
            "stages": {s.name: round(s.seconds, 3) for s in self.stages},
        }


@dataclasses.dataclass(kw_only=True)
class LinkResult(JobResult):
    """Everything a link job produced; ``matches()`` is the answer."""

    left: Table
    right: Table
    left_views: Views
    right_views: Views

    def summary(self) -> dict[str, Any]:
        """A JSON-ready account of the job (what ``--summary FILE.json`` writes).

        Keys: ``mode`` (``link``), ``records`` per side, ``pairs`` written, ``threshold``,
        ``estimated_precision`` with its ``estimated_precision_interval`` and whether the
        estimate's assumptions held (``estimate_reliable``),
        ``estimated_recall_among_candidates`` (of the matches among the selected candidate
        pairs, the share the threshold keeps: matches that blocking or the assignment never
        selected are not counted, so it bounds recall from above; None when unknown), the
        precision target and whether it was met, the ``assignment`` used and
        the ``duplicate_checks`` behind it, ``warnings`` (what the user must be told),
        ``scoring`` (unsupervised / supervised), the compared ``fields``, the column
        ``alignment`` (`Alignment.to_dict`, None when the spec listed the fields),
        ``inputs`` (how each file was read: encoding, delimiter) and ``stages`` (name,
        seconds, peak MiB when traced).
        """
        out = {"mode": "link", "pairs": int(self.accepted.sum())}
        out.update(_summary(self, {"left": self.left, "right": self.right}))
        return out

    def matches(self) -> list[tuple[str, str, float]]:
        """Accepted ``(left_id, right_id, score)``, best first."""
        rows = np.flatnonzero(self.accepted)
        rows = rows[np.argsort(-self.scores[rows], kind="stable")]
        li, ri = self.left.ids, self.right.ids
        return [
            (
                li[int(self.candidates.left[p])],
                ri[int(self.candidates.right[p])],
                float(self.scores[p]),
            )
            for p in rows
        ]

    def write_csv(self, path: str | os.PathLike[str]) -> int:
        """Write ``left_id,right_id,score``; returns the number of pairs."""
        return write_pairs_csv(path, self.matches())

    def entities(self) -> list[tuple[str, str, str]]:
        """``(side, record_id, entity_id)`` for every record; a matched pair shares an entity."""
        out = []
        partner = {right: left for left, right, _ in self.matches()}
        for rid in self.left.ids:
            out.append(("left", rid, f"left:{rid}"))
        for rid in self.right.ids:
            ent = f"left:{partner[rid]}" if rid in partner else f"right:{rid}"
            out.append(("right", rid, ent))
        return out

    def outcome(self) -> dict[str, Any]:
        return {
            "estimated_recall_among_candidates": self.choice.est_recall,
            "matches": int(self.accepted.sum()),
        }

    def matcher(self, index_factory: IndexFactory = default_index_factory) -> Any:
        from veclink.linkage.matcher import Matcher

        return Matcher.from_link(self, index_factory=index_factory)


@dataclasses.dataclass(kw_only=True)
class DedupeResult(JobResult):
    """Everything a dedupe job produced; ``entity_ids()`` is the answer."""

    table: Table
    views: Views
    #: entity number per record
    entity: np.ndarray

    def summary(self) -> dict[str, Any]:
        """A JSON-ready account of the job: as `LinkResult.summary`, with ``mode``
        ``dedupe``, ``entities`` (and the largest entity's size) instead of ``pairs``."""
        sizes = np.bincount(self.entity) if len(self.entity) else np.zeros(0, np.int64)
        out = {
            "mode": "dedupe",
            "entities": int(sizes.size),
            "largest_entity": int(sizes.max()) if sizes.size else 0,
            "pairs": int(self.accepted.sum()),
        }
        out.update(_summary(self, {"table": self.table}))
        return out

    def entity_ids(self) -> list[str]:
        """Per record: the id of the first record (table order) of its entity."""
        first: dict[int, str] = {}
        for rid, e in zip(self.table.ids, self.entity.tolist(), strict=True):
            first.setdefault(e, rid)
        return [first[e] for e in self.entity.tolist()]

    def write_csv(self, path: str | os.PathLike[str]) -> int:
        """Write ``id,entity_id`` for every record; returns the number of records."""
        return write_entities_csv(path, zip(self.table.ids, self.entity_ids(), strict=True))

    def outcome(self) -> dict[str, Any]:
        sizes = np.bincount(self.entity)
        return {
            "entities": int(sizes.size),
            "largest_entity": int(sizes.max()) if sizes.size else 0,
        }

    def matcher(self, index_factory: IndexFactory = default_index_factory) -> Any:
        from veclink.linkage.matcher import Matcher

        return Matcher.from_dedupe(self, index_factory=index_factory)
