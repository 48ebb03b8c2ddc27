"""Batch jobs: `link` two tables, `dedupe` one.

records -> views (serialise, embed, lexical) -> block -> compare -> score -> select
(one-to-one) -> threshold (precision target) -> [LLM judge] -> accept -> [cluster]

Every input is checked before any work starts and all problems are reported together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from veclink.encoders.batcher import batching
from veclink.linkage.active import Ask, Question, active_learning
from veclink.linkage.align import Alignment, align_columns, identity_alignment
from veclink.linkage.assign import alternative_scores, best_and_second, greedy_one_to_one
from veclink.linkage.assumptions import (
    MIN_SELF_LABELS,
    SideDuplicates,
    duplicate_test,
    mixture_interval,
    precision_at,
    precision_interval,
    reference_for,
    resolve_assignment,
)
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
from veclink.linkage.inputs import (
    TableLike,
    as_table,
    candidate_labels,
    label_rows,
    prepare_inputs,
)
from veclink.linkage.labels import LabelledPair
from veclink.linkage.memory import check_memory, estimate_memory, memory_budget_mb
from veclink.linkage.model import LinkModel, Progress, Views
from veclink.linkage.results import DedupeResult, LinkResult, StageStats, StageTimer
from veclink.linkage.scoring import (
    ThresholdChoice,
    ThresholdCurve,
    choose_threshold,
    curve_from_null,
    curve_from_probabilities,
    mixture_posterior,
    self_labels,
    self_train,
)
from veclink.linkage.serialize import resolve_fields, unaligned_columns
from veclink.linkage.spec import LinkageSpec
from veclink.linkage.tables import Table

#: ``(model, left, right, left views, right views, left rows, right rows, dedupe=)`` ->
#: the candidates' `Features`; the default runs `LinkModel.features` here, cluster mode
#: computes partitions of the candidates in parallel (`veclink.cluster.linkage_job`)
CompareFn = Callable[..., Features]


def compare_here(
    model: LinkModel,
    left: Table,
    right: Table,
    lv: Views,
    rv: Views,
    lrows: np.ndarray,
    rrows: np.ndarray,
    *,
    dedupe: bool,
) -> Features:
    """Compare the candidate pairs in this process (the default `CompareFn`)."""
    return model.features(left, right, lv, rv, lrows, rrows, dedupe=dedupe)


__all__ = [
    "CompareFn",
    "DedupeResult",
    "LinkResult",
    "StageStats",
    "as_table",
    "dedupe",
    "link",
    "prepare_inputs",
]


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
    encoding: str | None = None,
    compare: CompareFn = compare_here,
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
        compare: computes the candidates' features (default: in this process).

    Raises:
        InvalidArgument: bad spec, tables, fields or labels (before any work starts).
        ResourceExhausted: the job's estimated memory exceeds ``spec.memory_budget_mb``
            (before any work starts).
    """
    spec, lt, rt = prepare_inputs(spec or {}, left, right, labels=labels, encoding=encoding)
    job = _Job(spec, lt, rt, encoder, index_factory, progress, compare)
    return job.run(labels, ask, budget)  # type: ignore[return-value]


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
    encoding: str | None = None,
    compare: CompareFn = compare_here,
) -> DedupeResult:
    """Cluster the records of one table into entities (same arguments as `link`)."""
    spec, lt, _ = prepare_inputs(spec or {}, table, None, labels=labels, encoding=encoding)
    job = _Job(spec, lt, None, encoder, index_factory, progress, compare)
    return job.run(labels, ask, budget)  # type: ignore[return-value]


@dataclasses.dataclass
class _Scored:
    scores: np.ndarray
    supervised: bool
    #: active-learning answers (candidate rows, labels)
    asked: tuple[np.ndarray, np.ndarray] | None = None
    #: every labelled pair that is a candidate (for calibration among selected pairs)
    cand_rows: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    cand_y: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    #: (positives, negatives) among the self-labels of the last self-training round
    self_labels: tuple[int, int] | None = None


class _Job:
    """One link or dedupe run: the stages in order, sharing the tables and their views."""

    def __init__(
        self,
        spec: LinkageSpec,
        lt: Table,
        rt: Table | None,
        encoder: Any,
        index_factory: IndexFactory,
        progress: Progress | None,
        compare: CompareFn = compare_here,
    ) -> None:
        self.spec, self.lt = spec, lt
        self.compare = compare
        self.dedupe = rt is None
        self.rt = lt if rt is None else rt
        self.index_factory = index_factory
        self.stages = StageTimer(progress)
        if encoder is None:
            from veclink.encoders import load_encoder

            encoder = load_encoder(spec.encoder)
        # refuse a job that cannot fit before any stage runs
        estimate = estimate_memory(spec, lt, rt, int(encoder.dim))
        check_memory(estimate, memory_budget_mb(spec))
        self.alignment: Alignment | None = None
        if not spec.fields:  # the spec's fields override the alignment
            # names, words, number magnitudes and shapes; without the embedding signal,
            # which found the same alignment on every suite task and cost 5-9 s per job here
            with self.stages.stage("align"):
                self.alignment = (
                    identity_alignment(lt, seed=spec.seed)
                    if rt is None
                    else align_columns(lt, rt, seed=spec.seed)
                )
        fields = resolve_fields(spec, lt, rt, self.alignment)
        self.model = LinkModel(
            spec=spec,
            fields=fields,
            encoder=encoder,
            unaligned=(
                unaligned_columns(fields, lt, "left"),
                () if rt is None else unaligned_columns(fields, rt, "right"),
            ),
        )

    def run(self, labels: Sequence[LabelledPair], ask: Ask | None, budget: int) -> Any:
        spec, model = self.spec, self.model
        with self.stages.stage("embed") as report:
            self.lv, self.rv = self._views(report)
        with self.stages.stage("block"):
            candidates = self._block()
        with self.stages.stage("compare"):
            features = self.compare(
                model,
                self.lt,
                self.rt,
                self.lv,
                self.rv,
                candidates.left,
                candidates.right,
                dedupe=self.dedupe,
            )
        # until the duplicate checks say otherwise, a link job assumes one-to-one
        assignment = "one_to_one" if spec.assignment == "auto" else spec.assignment
        with self.stages.stage("score"):
            scored = self._score(candidates, features, labels, ask, budget, assignment)
        with self.stages.stage("select"):
            scores, selected, null, curve, choice = self._threshold(candidates, scored, assignment)
        duplicates: list[SideDuplicates] = []
        if not self.dedupe:
            with self.stages.stage("check"):
                duplicates = self._check_duplicates(candidates, scores, choice.threshold)
                found = resolve_assignment(spec.assignment, *(d.flagged for d in duplicates))
                if found != assignment:
                    assignment = found
                    if not scored.supervised:  # the self-labels relied on the broken structure
                        scored = self._score(candidates, features, (), None, 0, assignment)
                    scores, selected, null, curve, choice = self._threshold(
                        candidates, scored, assignment
                    )
        model.assignment = assignment
        choice, warnings = self._honesty(scored, scores, selected, null, choice, duplicates, curve)
        judged = np.zeros(0, np.int64)
        if spec.llm_judge is not None:
            with self.stages.stage("judge"):
                scores, selected, judged = _judge(
                    spec, candidates, scores, selected, choice, self.lv, self.rv, assignment
                )
        model.threshold = choice.threshold
        accepted = selected & (scores >= choice.threshold)
        mode = "supervised" if scored.supervised else "unsupervised"
        common = dict(
            spec=spec,
            model=model,
            candidates=candidates,
            features=features,
            scores=scores,
            selected=selected,
            accepted=accepted,
            choice=choice,
            curve=curve,
            null_scores=null,
            mode=mode,
            stages=self.stages.stats,
            labels=scored.asked,
            judged_rows=judged,
            warnings=tuple(warnings),
            duplicates=tuple(duplicates),
            assignment="dedupe" if self.dedupe else assignment,
            alignment=self.alignment,
        )
        if self.dedupe:
            with self.stages.stage("cluster"):
                entity = cluster(
                    len(self.lt),
                    candidates.left,
                    candidates.right,
                    scores,
                    choice.threshold,
                    spec.cluster,
                )
            return DedupeResult(table=self.lt, views=self.lv, entity=entity, **common)
        return LinkResult(
            left=self.lt, right=self.rt, left_views=self.lv, right_views=self.rv, **common
        )

    def _check_duplicates(
        self, candidates: CandidatePairs, scores: np.ndarray, threshold: float
    ) -> list[SideDuplicates]:
        """Each side's duplicate check, from the candidate pairs scored by the job's model."""
        return [
            duplicate_test(side, candidates, scores, threshold, table.ids)
            for side, table in (("left", self.lt), ("right", self.rt))
        ]

    def _honesty(
        self,
        scored: _Scored,
        scores: np.ndarray,
        selected: np.ndarray,
        null: np.ndarray,
        choice: ThresholdChoice,
        duplicates: Sequence[SideDuplicates],
        curve: ThresholdCurve,
    ) -> tuple[ThresholdChoice, list[str]]:
        """The precision interval, and what the user must be told about the estimate."""
        warnings: list[str] = []
        reliable = True
        chosen = selected & (scores >= choice.threshold)
        if scored.supervised:
            p = scores[chosen]
            rng = np.random.default_rng(self.spec.seed)
            boots = (
                [p[rng.integers(0, p.size, p.size)].mean() for _ in range(200)] if p.size else []
            )
            interval = (
                (float(np.quantile(boots, 0.05)), float(np.quantile(boots, 0.95)))
                if p.size
                else (0.0, 1.0)
            )
        elif null.size == 0:
            interval, reliable = (0.0, 1.0), False
            warnings.append(
                "no record has known non-matches (duplicates on every side, or no alternatives): "
                "the precision estimate comes from a score mixture and is not reliable; "
                "label a few hundred pairs (--labels) for a trustworthy one"
            )
        elif self.dedupe:
            interval, known = self._dedupe_interval(scores, null, choice)
            if known is not None:
                reliable = False
                warnings.append(
                    "the two label-free precision estimates disagree (a mixture of the scores: "
                    f"{choice.est_precision:.2f}; each record's best alternatives as known "
                    f"non-matches: {known:.2f}): look-alike "
                    "records or sources that differ systematically break their assumptions, so "
                    "the precision is not known; label a few hundred pairs (--ask) for one"
                )
        else:
            interval = precision_interval(
                scores[selected], null, choice.threshold, seed=self.spec.seed
            )
        for d in duplicates:
            excess = d.observed - d.expected
            if not d.flagged and excess > max(5.0, 3 * (d.expected + 1) ** 0.5):
                warnings.append(
                    f"the {d.side} table may hold some duplicates or look-alike records: "
                    f"{d.observed} records of the other table have several {d.side} candidates "
                    f"above the match threshold ({d.expected:.0f} the other way round); too few "
                    "to leave one-to-one, so some true pairs may be missing"
                )
            if d.flagged:
                warnings.append(
                    f"the {d.side} table appears to hold duplicates: {d.observed} records of the "
                    f"other table have several {d.side} candidates above the match threshold "
                    f"({d.expected:.0f} the other way round); assignment "
                    f"{self.model.assignment}; precision is estimated from the other side's "
                    "structure only"
                )
        if not scored.supervised and scored.self_labels is not None:
            pos, neg = scored.self_labels
            if min(pos, neg) < MIN_SELF_LABELS:
                reliable = False
                warnings.append(
                    f"too few confident self-labels ({pos} matches, {neg} non-matches): "
                    "the precision estimate is not reliable"
                )
        lo, hi = interval
        if hi - lo > 0.2:
            warnings.append(f"the precision estimate is uncertain: between {lo:.2f} and {hi:.2f}")
        narrow = self._narrow_target(curve, choice)
        if narrow:
            warnings.append(narrow)
        if not choice.target_met and self.spec.precision > 0:
            warnings.append(
                f"no threshold reaches the precision target {self.spec.precision}: "
                f"the most precise one was used (estimated {choice.est_precision:.2f})"
            )
        lo, hi = min(lo, choice.est_precision), max(hi, choice.est_precision)
        return dataclasses.replace(choice, interval=(lo, hi), reliable=reliable), warnings

    def _narrow_target(self, curve: ThresholdCurve, choice: ThresholdChoice) -> str | None:
        """A warning when the precision target is met only by a sliver of top pairs.

        Where the estimate is conservative (duplicates make a record's best alternative a
        match, not a non-match), the only thresholds it lets through the target may keep
        a few tied top pairs. The threshold is still the one asked for; the user is told
        what the target costs and what dropping it would give.
        """
        if not choice.target_met or self.spec.precision <= 0 or self.spec.threshold is not None:
            return None
        best = choose_threshold(curve, 0.0, "f1")
        f1 = 2 * choice.est_precision * choice.est_recall
        f1 /= max(choice.est_precision + choice.est_recall, 1e-12)
        best_f1 = 2 * best.est_precision * best.est_recall
        best_f1 /= max(best.est_precision + best.est_recall, 1e-12)
        if choice.est_recall >= NARROW_RECALL or best_f1 - f1 < NARROW_F1_GAP:
            return None
        return (
            f"the precision target {self.spec.precision} is met only by the top pairs "
            f"(estimated recall {choice.est_recall:.2f} of the candidates' matches); without "
            f"it (--precision 0) the best estimated F1 is {best_f1:.2f}, at estimated "
            f"precision {best.est_precision:.2f} and recall {best.est_recall:.2f}"
        )

    def _dedupe_interval(
        self, scores: np.ndarray, null: np.ndarray, choice: ThresholdChoice
    ) -> tuple[tuple[float, float], float | None]:
        """Dedupe without labels: the interval of the precision, and the known-non-match
        estimate when it disagrees with the mixture's (None when they agree).

        The point estimate comes from a mixture of the scores; its bootstrap measures the
        mixture's sampling doubt only, not whether two groups of scores are matches and
        non-matches. The known-non-match estimate (each record's best alternatives, as for
        a link job) rests on another assumption: an entity rarely holds more than two
        records. Where they differ by more than `DEDUPE_AGREEMENT`, the interval spans both
        and the estimate is marked unreliable.
        """
        seed = self.spec.seed
        mixed = mixture_interval(scores, choice.threshold, seed=seed)
        known = precision_interval(scores, null, choice.threshold, seed=seed) if null.size else None
        if mixed is None or known is None:
            return (mixed or known or (0.0, 1.0)), None
        point = agree_point(scores, null, choice.threshold)
        if abs(choice.est_precision - point) <= DEDUPE_AGREEMENT:
            return mixed, None
        return (min(mixed[0], known[0]), max(mixed[1], known[1])), point

    def _views(self, report: Callable[[float], None]) -> tuple[Views, Views]:
        model, lt, rt = self.model, self.lt, self.rt
        texts = model.texts(lt, "left")[1] + ([] if self.dedupe else model.texts(rt, "right")[1])
        model.fit(texts)
        share = len(lt) / (len(lt) + (0 if self.dedupe else len(rt)))
        # the serving engine: tokenising overlaps the model (a served job's encoder is the
        # server's batched one already and is used as it is)
        encoder = model.encoder
        with batching(encoder) as model.encoder:
            try:
                lv = model.views(lt, "left", lambda f: report(f * share))
                if self.dedupe:
                    return lv, lv
                return lv, model.views(rt, "right", lambda f: report(share + f * (1 - share)))
            finally:
                model.encoder = encoder

    def _block(self) -> CandidatePairs:
        spec, fields = self.spec, self.model.fields
        keys_l = [table_keys(self.lt, fields, k, "left") for k in spec.blocking.keys]
        keys_r = (
            []
            if self.dedupe
            else [table_keys(self.rt, fields, k, "right") for k in spec.blocking.keys]
        )
        return block(
            self.lv.blocking_source(spec.blocking),
            None if self.dedupe else self.rv.blocking_source(spec.blocking),
            spec.blocking,
            left_keys=keys_l,
            right_keys=keys_r,
            index_factory=self.index_factory,
        )

    def _score(
        self,
        candidates: CandidatePairs,
        features: Features,
        labels: Sequence[LabelledPair],
        ask: Ask | None,
        budget: int,
        assignment: str,
    ) -> _Scored:
        """Self-trained scores; then, with labels or answers, a labelled classifier."""
        spec, model = self.spec, self.model
        reference = "both" if self.dedupe else reference_for(assignment, spec.reference)
        values = features.values
        model.classifier, scores = self_train(
            candidates, values, reference, kind=spec.classifier, seed=spec.seed
        )
        _, y_self = self_labels(candidates, scores, reference)
        counts = (int(y_self.sum()), int((y_self == 0).sum()))
        if not labels and not (ask is not None and budget > 0):
            return _Scored(scores, supervised=False, self_labels=counts)
        prior_rows, prior_y = self_labels(candidates, scores, reference)
        x_prior = values[prior_rows]
        x_lab = np.zeros((0, values.shape[1]), np.float32)
        y_lab = np.zeros(0, np.int64)
        if labels:
            a, b, y_lab = label_rows(labels, self.lt, self.rt)
            x_lab = model.features(
                self.lt, self.rt, self.lv, self.rv, a, b, dedupe=self.dedupe
            ).values

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

        asked = None
        if ask is not None and budget > 0:
            base_x, base_y = x_lab, y_lab

            def retrain(rows: np.ndarray, y: np.ndarray) -> np.ndarray:
                x = np.vstack([base_x, values[rows]])
                return fit(x, np.concatenate([base_y, y]), calibrate=False).score(values)

            rows, y_act, _ = active_learning(
                candidates,
                scores,
                ask,
                _describer(candidates, self.lt, self.rt),
                retrain,
                budget=budget,
                threshold=_quick_threshold(candidates, scores, spec, self.dedupe, assignment),
                seed=spec.seed,
            )
            x_lab = np.vstack([x_lab, values[rows]])
            y_lab = np.concatenate([y_lab, y_act])
            asked = (rows, y_act)
        if not y_lab.size:  # nobody answered: stay unsupervised
            return _Scored(scores, supervised=False, asked=asked)
        clf = fit(x_lab, y_lab, calibrate=True)
        model.classifier = clf
        cand_rows, cand_y = candidate_labels(candidates, labels, self.lt, self.rt, asked)
        return _Scored(clf.score(values), True, asked, cand_rows, cand_y)

    def _threshold(
        self, candidates: CandidatePairs, scored: _Scored, assignment: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, ThresholdCurve, ThresholdChoice]:
        """Selection and the threshold meeting the precision target."""
        spec, scores = self.spec, scored.scores
        selected, null = _select(candidates, scores, spec, self.dedupe, assignment)
        if self.dedupe:
            # an entity may hold many records: every pair above the threshold counts
            selected = np.ones(len(scores), dtype=bool)
            if scored.supervised:
                curve = curve_from_probabilities(scores)
                choice = choose_threshold(curve, spec.precision, spec.objective)
            else:
                curve, choice = _mixture_threshold(scores, null, spec)
        else:
            if scored.supervised:
                # P(match | score) among *selected* pairs: one-to-one selection is evidence
                # of its own, so recalibrate on the labelled pairs that were selected
                platt = calibrate_selected(scores, selected, scored.cand_rows, scored.cand_y)
                clf = self.model.classifier
                if platt is not None and isinstance(clf, PairClassifier):
                    scores = apply_platt(scores, platt)
                    clf.platt = compose_platt(clf.platt, platt)
                curve = curve_from_probabilities(scores[selected])
            elif null.size == 0:  # no known non-matches: a mixture, as for dedupe
                curve, choice = _mixture_threshold(scores[selected], null, spec)
            else:
                curve = curve_from_null(scores[selected], null)
            if scored.supervised or null.size:
                choice = choose_threshold(curve, spec.precision, spec.objective)
        if spec.threshold is not None:
            choice = ThresholdChoice(spec.threshold, choice.est_precision, choice.est_recall, True)
        return scores, selected, null, curve, choice


#: a target met at an estimated recall below this, while dropping it would raise the
#: estimated F1 by at least NARROW_F1_GAP, gets a warning (see `_Job._narrow_target`)
NARROW_RECALL = 0.5
NARROW_F1_GAP = 0.2

#: how far the two label-free precision estimates of a dedupe job may differ and still be
#: trusted (a tenth: the interval of either estimator alone is seldom wider)
DEDUPE_AGREEMENT = 0.1


def agree_point(scores: np.ndarray, null: np.ndarray, threshold: float) -> float:
    """The known-non-match precision estimate of the pairs scoring >= ``threshold``."""
    return precision_at(
        np.asarray(scores, np.float64), np.asarray(null, np.float64), threshold, 0.5
    )


def _select(
    candidates: CandidatePairs,
    scores: np.ndarray,
    spec: LinkageSpec,
    dedupe_job: bool,
    assignment: str = "one_to_one",
) -> tuple[np.ndarray, np.ndarray]:
    """Selected pairs, and null samples: scores of known non-matches.

    The null samples are the best alternative scores of the selected pairs' records: when
    a side holds no duplicates, a record's best alternative is a best non-match, which is
    what a false positive scores. Selection follows the assignment: ``one_to_one`` best
    first, ``many_to_one`` each left record's best, ``one_to_many`` each right record's
    best, ``many_to_many`` every pair.
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
        if assignment == "one_to_one":
            selected = greedy_one_to_one(candidates.left, candidates.right, scores)
        elif assignment == "many_to_many":
            selected = np.ones(len(scores), dtype=bool)
        else:
            by_left = assignment == "many_to_one"
            g, n = (
                (candidates.left, candidates.n_left)
                if by_left
                else (candidates.right, candidates.n_right)
            )
            best_idx, _, _ = best_and_second(g, scores, n)
            selected = np.zeros(len(scores), dtype=bool)
            selected[best_idx[best_idx >= 0]] = True
        reference = reference_for(assignment, spec.reference)
        views = []
        if reference in ("right", "both"):
            views.append((candidates.left, scores, selected, candidates.n_left))
        if reference in ("left", "both"):
            views.append((candidates.right, scores, selected, candidates.n_right))
    nulls = [alternative_scores(g, sc, sel, n) for g, sc, sel, n in views]
    return selected, (np.concatenate(nulls) if nulls else np.zeros(0))


def _quick_threshold(
    candidates: CandidatePairs,
    scores: np.ndarray,
    spec: LinkageSpec,
    dedupe_job: bool,
    assignment: str = "one_to_one",
) -> float:
    selected, null = _select(candidates, scores, spec, dedupe_job, assignment)
    return choose_threshold(curve_from_null(scores[selected], null), spec.precision).threshold


def _mixture_threshold(
    scores: np.ndarray, null: np.ndarray, spec: LinkageSpec
) -> tuple[ThresholdCurve, ThresholdChoice]:
    """Dedupe without labels: thresholds from a two-component mixture of the scores.

    The curve is expressed in score units (each posterior threshold mapped to the lowest
    score reaching it) so that the threshold applies to scores directly. Falls back to
    the known-non-match estimate when the mixture does not separate.
    """
    post = mixture_posterior(scores, spec.seed)
    if post is None:
        curve = curve_from_null(scores, null, quantile=0.9)
        return curve, choose_threshold(curve, spec.precision, spec.objective)
    pcurve = curve_from_probabilities(post)
    pchoice = choose_threshold(pcurve, spec.precision, spec.objective)
    order = np.argsort(post, kind="stable")
    # lowest score whose posterior reaches each posterior threshold
    lowest = np.minimum.accumulate(scores[order][::-1])[::-1]
    idx = np.searchsorted(post[order], pcurve.thresholds, side="left")
    idx = np.clip(idx, 0, len(order) - 1)
    curve = ThresholdCurve(lowest[idx], pcurve.accepted, pcurve.precision, pcurve.recall)
    i = int(
        np.clip(np.searchsorted(post[order], pchoice.threshold, side="left"), 0, len(order) - 1)
    )
    choice = ThresholdChoice(
        float(lowest[i]), pchoice.est_precision, pchoice.est_recall, pchoice.target_met
    )
    return curve, choice


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
    assignment: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blend an LLM's judgement into the scores of borderline pairs, then select again."""
    from veclink.linkage.llm_judge import LLMJudge, blend, borderline

    dedupe_job = candidates.dedupe
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
    if not dedupe_job:  # dedupe keeps every pair in play
        selected, _ = _select(candidates, scores, spec, dedupe_job, assignment)
    return scores, selected, rows
