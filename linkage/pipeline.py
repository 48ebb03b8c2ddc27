"""Batch jobs: `link` two tables, `dedupe` one.

records -> views (serialise, embed, lexical) -> block -> compare -> score -> select
(one-to-one) -> threshold (precision target) -> [LLM judge] -> accept -> [cluster]

Every input is checked before any work starts and all problems are reported together.
"""

from __future__ import annotations

import dataclasses
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from veclink.linkage.active import Ask, Question, active_learning
from veclink.linkage.assign import alternative_scores, best_and_second, greedy_one_to_one
from veclink.linkage.blocking import (
    CandidatePairs,
    IndexFactory,
    block,
    default_index_factory,
    table_keys,
)
from veclink.linkage.classifier import (
    PairClassifier,
    apply_platt,
    calibrate_selected,
    compose_platt,
    fit_with_labels,
)
from veclink.linkage.cluster import cluster
from veclink.linkage.compare import Features
from veclink.linkage.labels import LabelledPair, check_labels
from veclink.linkage.model import LinkModel, Progress, Views
from veclink.linkage.scoring import (
    ThresholdChoice,
    ThresholdCurve,
    choose_threshold,
    curve_from_null,
    curve_from_probabilities,
    self_labels,
    self_train,
)
from veclink.linkage.serialize import check_fields, resolve_fields
from veclink.linkage.spec import LinkageSpec
from veclink.linkage.tables import Table, read_table

from veclink.errors import InvalidArgument, VeclinkError

TableLike = Any  # Table | path | sequence of dicts | pandas.DataFrame


@dataclasses.dataclass(frozen=True)
class StageStats:
    name: str
    seconds: float
    #: peak traced Python/numpy memory during the stage (None unless tracemalloc is on)
    peak_mb: float | None


class _Stages:
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


@dataclasses.dataclass
class LinkResult:
    """Everything a link job produced; ``matches()`` is the answer."""

    spec: LinkageSpec
    model: LinkModel
    left: Table
    right: Table
    left_views: Views
    right_views: Views
    candidates: CandidatePairs
    features: Features
    scores: np.ndarray
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

    @property
    def threshold(self) -> float:
        return self.choice.threshold

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
        import csv

        rows = self.matches()
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["left_id", "right_id", "score"])
            w.writerows((a, b, f"{s:.6f}") for a, b, s in rows)
        return len(rows)

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

    def metrics(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "candidates": len(self.candidates),
            "reduction_ratio": self.candidates.reduction_ratio,
            "threshold": self.threshold,
            "estimated_precision": self.choice.est_precision,
            "estimated_recall": self.choice.est_recall,
            "precision_target": self.spec.precision,
            "precision_target_met": self.choice.target_met,
            "matches": int(self.accepted.sum()),
            "stages": {s.name: round(s.seconds, 3) for s in self.stages},
        }

    def matcher(self, index_factory: IndexFactory = default_index_factory) -> Any:
        from veclink.linkage.matcher import Matcher

        return Matcher.from_link(self, index_factory=index_factory)


@dataclasses.dataclass
class DedupeResult:
    spec: LinkageSpec
    model: LinkModel
    table: Table
    views: Views
    candidates: CandidatePairs
    features: Features
    scores: np.ndarray
    #: the best pair of every record
    selected: np.ndarray
    accepted: np.ndarray
    choice: ThresholdChoice
    curve: ThresholdCurve
    null_scores: np.ndarray
    mode: str
    stages: list[StageStats]
    #: entity number per record
    entity: np.ndarray
    labels: tuple[np.ndarray, np.ndarray] | None = None
    #: candidate rows whose score blends in the LLM judge's answer
    judged_rows: np.ndarray | None = None

    @property
    def threshold(self) -> float:
        return self.choice.threshold

    def entity_ids(self) -> list[str]:
        """Per record: the id of the first record (table order) of its entity."""
        first: dict[int, str] = {}
        for rid, e in zip(self.table.ids, self.entity.tolist(), strict=True):
            first.setdefault(e, rid)
        return [first[e] for e in self.entity.tolist()]

    def write_csv(self, path: str | os.PathLike[str]) -> int:
        import csv

        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "entity_id"])
            w.writerows(zip(self.table.ids, self.entity_ids(), strict=True))
        return len(self.table)

    def metrics(self) -> dict[str, Any]:
        sizes = np.bincount(self.entity)
        return {
            "mode": self.mode,
            "candidates": len(self.candidates),
            "reduction_ratio": self.candidates.reduction_ratio,
            "threshold": self.threshold,
            "estimated_precision": self.choice.est_precision,
            "precision_target": self.spec.precision,
            "precision_target_met": self.choice.target_met,
            "entities": int(sizes.size),
            "largest_entity": int(sizes.max()) if sizes.size else 0,
            "stages": {s.name: round(s.seconds, 3) for s in self.stages},
        }

    def matcher(self, index_factory: IndexFactory = default_index_factory) -> Any:
        from veclink.linkage.matcher import Matcher

        return Matcher.from_dedupe(self, index_factory=index_factory)


# ------------------------------------------------------------------------------- inputs


def as_table(obj: TableLike, *, id_column: str, name: str, encoding: str = "utf-8") -> Table:
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
    encoding: str = "utf-8",
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
        try:
            fields = resolve_fields(spec, lt, rt)
            problems += check_fields(fields, lt, rt)
        except InvalidArgument as exc:
            problems.append(str(exc))
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


def _label_rows(
    labels: Sequence[LabelledPair], left: Table, right: Table
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lp, rp = left.position(), right.position()
    a = np.array([lp[x.left_id] for x in labels], dtype=np.int64)
    b = np.array([rp[x.right_id] for x in labels], dtype=np.int64)
    y = np.array([int(x.match) for x in labels], dtype=np.int64)
    return a, b, y


# --------------------------------------------------------------------------------- link


def link(
    left: TableLike,
    right: TableLike,
    spec: LinkageSpec | Mapping[str, Any] | None = None,
    *,
    labels: Sequence[LabelledPair] = (),
    ask: Ask | None = None,
    budget: int = 0,
    encoder: Any = None,
    index_factory: IndexFactory = default_index_factory,
    progress: Progress | None = None,
    encoding: str = "utf-8",
) -> LinkResult:
    """Link ``left`` to ``right``: which left record is which right record.

    Args:
        left, right: tables (`Table`, file path, list of dicts or DataFrame).
        spec: `LinkageSpec` or its dict form (validated; every mistake reported at once).
        labels: labelled pairs; with labels the scorer is a calibrated classifier.
        ask: active learning: called with a `Question` per pair, up to ``budget`` times.
        encoder: an `Encoder` (default: the one the spec names).
        index_factory: ``(kind, dim, metric) -> VectorIndex``.
        progress: ``(stage, fraction)`` callback.

    Raises:
        InvalidArgument: bad spec, tables, fields or labels (before any work starts).
    """
    spec, lt, rt = prepare_inputs(spec or {}, left, right, labels=labels, encoding=encoding)
    return _run(spec, lt, rt, labels, ask, budget, encoder, index_factory, progress)


def dedupe(
    table: TableLike,
    spec: LinkageSpec | Mapping[str, Any] | None = None,
    *,
    labels: Sequence[LabelledPair] = (),
    ask: Ask | None = None,
    budget: int = 0,
    encoder: Any = None,
    index_factory: IndexFactory = default_index_factory,
    progress: Progress | None = None,
    encoding: str = "utf-8",
) -> DedupeResult:
    """Cluster the records of one table into entities (same arguments as `link`)."""
    spec, lt, _ = prepare_inputs(spec or {}, table, None, labels=labels, encoding=encoding)
    return _run(spec, lt, None, labels, ask, budget, encoder, index_factory, progress)


def _run(
    spec: LinkageSpec,
    lt: Table,
    rt: Table | None,
    labels: Sequence[LabelledPair],
    ask: Ask | None,
    budget: int,
    encoder: Any,
    index_factory: IndexFactory,
    progress: Progress | None,
) -> Any:
    dedupe_job = rt is None
    other = lt if rt is None else rt
    stages = _Stages(progress)
    fields = resolve_fields(spec, lt, rt)
    if encoder is None:
        from veclink.encoders import load_encoder

        encoder = load_encoder(spec.encoder)
    model = LinkModel(spec=spec, fields=fields, encoder=encoder)

    with stages.stage("embed") as report:
        ltexts = model.texts(lt, "left")[1]
        rtexts = [] if dedupe_job else model.texts(other, "right")[1]
        model.fit(ltexts + rtexts)
        share = len(lt) / (len(lt) + (0 if dedupe_job else len(other)))
        lv = model.views(lt, "left", lambda f: report(f * share))
        rv = (
            lv
            if dedupe_job
            else model.views(other, "right", lambda f: report(share + f * (1 - share)))
        )

    with stages.stage("block"):
        w = spec.blocking.lexical_weight
        keys_l = [table_keys(lt, fields, k, "left") for k in spec.blocking.keys]
        keys_r = (
            []
            if dedupe_job
            else [table_keys(other, fields, k, "right") for k in spec.blocking.keys]
        )
        candidates = block(
            lv.blocking(w),
            None if dedupe_job else rv.blocking(w),
            spec.blocking,
            left_keys=keys_l,
            right_keys=keys_r,
            index_factory=index_factory,
        )

    with stages.stage("compare"):
        features = model.features(
            lt, other, lv, rv, candidates.left, candidates.right, dedupe=dedupe_job
        )

    with stages.stage("score"):
        label_rows = None
        cand_rows = cand_y = np.zeros(0, np.int64)
        supervised = bool(labels) or (ask is not None and budget > 0)
        reference = "both" if dedupe_job else spec.reference
        self_model, scores = self_train(
            candidates, features.values, reference, kind=spec.classifier, seed=spec.seed
        )
        model.classifier = self_model
        if supervised:
            prior_rows, prior_y = self_labels(candidates, scores, reference)
            x_prior = features.values[prior_rows]
            x_lab = np.zeros((0, features.values.shape[1]), np.float32)
            y_lab = np.zeros(0, np.int64)
            if labels:
                a, b, y_lab = _label_rows(labels, lt, other)
                x_lab = model.features(lt, other, lv, rv, a, b, dedupe=dedupe_job).values

            def fit(x: np.ndarray, y: np.ndarray, calibrate: bool) -> PairClassifier:
                return fit_with_labels(
                    x,
                    y,
                    x_prior=x_prior,
                    y_prior=prior_y,
                    kind=spec.classifier,
                    seed=spec.seed,
                    calibrate=calibrate,
                )

            if ask is not None and budget > 0:
                base_x, base_y = x_lab, y_lab

                def retrain(rows: np.ndarray, y: np.ndarray) -> np.ndarray:
                    x = np.vstack([base_x, features.values[rows]])
                    clf = fit(x, np.concatenate([base_y, y]), calibrate=False)
                    return clf.score(features.values)

                rows, y_act, _ = active_learning(
                    candidates,
                    scores,
                    ask,
                    _describer(candidates, lt, other),
                    retrain,
                    budget=budget,
                    threshold=_quick_threshold(candidates, scores, spec, dedupe_job),
                    seed=spec.seed,
                )
                x_lab = np.vstack([x_lab, features.values[rows]])
                y_lab = np.concatenate([y_lab, y_act])
                label_rows = (rows, y_act)
            if y_lab.size:
                clf = fit(x_lab, y_lab, calibrate=True)
                model.classifier = clf
                scores = clf.score(features.values)
                cand_rows, cand_y = _candidate_labels(candidates, labels, lt, other, label_rows)
            else:  # nobody answered: stay unsupervised
                supervised = False

    with stages.stage("select"):
        selected, null = _select(candidates, scores, spec, dedupe_job)
        if supervised:
            # P(match | score) among *selected* pairs: one-to-one selection is evidence
            # of its own, so recalibrate on the labelled pairs that were selected
            platt = calibrate_selected(scores, selected, cand_rows, cand_y)
            if platt is not None and isinstance(model.classifier, PairClassifier):
                scores = apply_platt(scores, platt)
                model.classifier.platt = compose_platt(model.classifier.platt, platt)
            curve = curve_from_probabilities(scores[selected])
        else:
            # dedupe: a record without duplicates selects its best (false) pair, which
            # scores above the alternatives of records that have one; a higher lambda
            # counts those false pairs less optimistically
            curve = curve_from_null(scores[selected], null, quantile=0.9 if dedupe_job else 0.5)
        choice = choose_threshold(curve, spec.precision, spec.objective)
        if spec.threshold is not None:
            choice = ThresholdChoice(spec.threshold, choice.est_precision, choice.est_recall, True)
    judged_rows = np.zeros(0, np.int64)
    if spec.llm_judge is not None:
        with stages.stage("judge"):
            scores, selected, judged_rows = _judge(
                spec, candidates, scores, selected, choice, lv, rv, dedupe_job
            )
    model.threshold = choice.threshold
    # dedupe: the best pair of each record; larger entities connect through them
    accepted = selected & (scores >= choice.threshold)

    mode = "supervised" if supervised else "unsupervised"
    if dedupe_job:
        with stages.stage("cluster"):
            entity = cluster(
                len(lt), candidates.left, candidates.right, scores, choice.threshold, spec.cluster
            )
        return DedupeResult(
            spec,
            model,
            lt,
            lv,
            candidates,
            features,
            scores,
            selected,
            accepted,
            choice,
            curve,
            null,
            mode,
            stages.stats,
            entity,
            label_rows,
            judged_rows,
        )
    return LinkResult(
        spec,
        model,
        lt,
        other,
        lv,
        rv,
        candidates,
        features,
        scores,
        selected,
        accepted,
        choice,
        curve,
        null,
        mode,
        stages.stats,
        label_rows,
        judged_rows,
    )


def _select(
    candidates: CandidatePairs, scores: np.ndarray, spec: LinkageSpec, dedupe_job: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Selected pairs, and null samples: scores of known non-matches.

    The null samples are the best alternative scores of the selected pairs' records: when
    a side holds no duplicates, a record's best alternative is a best non-match, which is
    what a false positive scores.
    """
    if dedupe_job:
        n = candidates.n_left
        g = np.concatenate([candidates.left, candidates.right])
        s2 = np.concatenate([scores, scores])
        best_idx, _, _ = best_and_second(g, s2, n)
        selected = np.zeros(len(scores), dtype=bool)
        selected[best_idx[best_idx >= 0] % max(len(scores), 1)] = True
        views = [(g, s2, np.concatenate([selected, selected]), n)]
    else:
        if spec.one_to_one:
            selected = greedy_one_to_one(candidates.left, candidates.right, scores)
        else:
            best_idx, _, _ = best_and_second(candidates.left, scores, candidates.n_left)
            selected = np.zeros(len(scores), dtype=bool)
            selected[best_idx[best_idx >= 0]] = True
        views = []
        if spec.reference in ("right", "both"):
            views.append((candidates.left, scores, selected, candidates.n_left))
        if spec.reference in ("left", "both"):
            views.append((candidates.right, scores, selected, candidates.n_right))
    nulls = [alternative_scores(g, sc, sel, n) for g, sc, sel, n in views]
    return selected, (np.concatenate(nulls) if nulls else np.zeros(0))


def _quick_threshold(
    candidates: CandidatePairs, scores: np.ndarray, spec: LinkageSpec, dedupe_job: bool
) -> float:
    selected, null = _select(candidates, scores, spec, dedupe_job)
    return choose_threshold(curve_from_null(scores[selected], null), spec.precision).threshold


def _candidate_labels(
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
        a, b, y = _label_rows(labels, lt, rt)
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


def _describer(
    candidates: CandidatePairs, lt: Table, rt: Table
) -> Callable[[int, int, float, int], Question]:
    def describe(row: int, asked: int, score: float, budget: int) -> Question:
        a, b = int(candidates.left[row]), int(candidates.right[row])
        return Question(row, lt.ids[a], rt.ids[b], lt.record(a), rt.record(b), score, asked, budget)

    return describe


def _judge(
    spec: LinkageSpec,
    candidates: CandidatePairs,
    scores: np.ndarray,
    selected: np.ndarray,
    choice: ThresholdChoice,
    lv: Views,
    rv: Views,
    dedupe_job: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blend an LLM's judgement into the scores of borderline pairs, then select again."""
    from veclink.linkage.llm_judge import LLMJudge, blend, borderline

    if spec.llm_judge is None:
        return scores, selected, np.zeros(0, np.int64)
    judge = LLMJudge(spec.llm_judge)
    # judge the selected pairs and the best alternatives (they may overtake after judging)
    eligible = selected.copy()
    if not dedupe_job:
        best_idx, _, _ = best_and_second(candidates.left, scores, candidates.n_left)
        eligible[best_idx[best_idx >= 0]] = True
    rows = borderline(scores, eligible, choice.threshold, spec.llm_judge)
    texts = [(lv.texts[int(candidates.left[p])], rv.texts[int(candidates.right[p])]) for p in rows]
    judged = judge.judge(texts) if len(rows) else np.zeros(0)
    scores = blend(scores, rows, judged, spec.llm_judge.weight)
    selected, _ = _select(candidates, scores, spec, dedupe_job)
    return scores, selected, rows
