"""Checks of the label-free estimates' assumptions: duplicates per side, precision interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from veclink.linkage import dedupe, link, read_table
from veclink.linkage.assumptions import (
    duplicate_test,
    mixture_interval,
    precision_at,
    precision_interval,
    reference_for,
    resolve_assignment,
)
from veclink.linkage.scoring import mixture_posterior
from veclink.linkage.tables import Table

from tests.fixtures.linkage import support

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "linkage"


S = support


def test_assignment_follows_the_sides_with_duplicates() -> None:
    assert resolve_assignment("auto", False, False) == "one_to_one"
    assert resolve_assignment("auto", False, True) == "one_to_many"
    assert resolve_assignment("auto", True, False) == "many_to_one"
    assert resolve_assignment("auto", True, True) == "many_to_many"
    assert resolve_assignment("one_to_one", True, True) == "one_to_one"  # the user decides
    assert reference_for("one_to_many") == "left"
    assert reference_for("many_to_one") == "right"
    assert reference_for("many_to_many") == "none"
    assert reference_for("one_to_one", "right") == "right"


def test_duplicate_test_flags_one_sided_ambiguity_only() -> None:
    from veclink.linkage.blocking import CandidatePairs

    n = 300
    ids = tuple(f"r{i}" for i in range(n))
    # every left record i pairs with right i (a match) and right i+1 (a non-match)
    left = np.repeat(np.arange(n), 2)
    right = np.stack([np.arange(n), (np.arange(n) + 1) % n], 1).ravel()
    scores = np.tile([0.9, 0.2], n)
    pairs = CandidatePairs(
        left=left, right=right, score=scores.astype(np.float32), n_left=n, n_right=n
    )
    clean = duplicate_test("right", pairs, scores, 0.5, ids)
    assert not clean.flagged and clean.observed == 0
    # 40 right records are copies (rows n..n+39) of the matches of left 0..39
    cl = np.concatenate([left, np.arange(40), np.arange(1, 41)])
    cr = np.concatenate([right, n + np.arange(40), n + np.arange(40)])
    cs = np.concatenate([scores, np.full(40, 0.85), np.full(40, 0.2)])
    cids = ids + tuple(f"r{i}-copy" for i in range(40))
    copied = CandidatePairs(
        left=cl, right=cr, score=cs.astype(np.float32), n_left=n, n_right=n + 40
    )
    res = duplicate_test("right", copied, cs, 0.5, cids)
    assert res.flagged and res.observed == 40 and res.expected == 0
    assert res.examples and res.examples[0][2] >= 0.5
    assert res.to_dict()["duplicates_detected"] is True
    assert not duplicate_test("left", copied, cs, 0.5, tuple(map(str, range(n)))).flagged
    dup = scores.copy()
    dup[1:80:2] = 0.85
    # ambiguity on both sides alike (look-alike distinct records) is not a duplicate
    both = np.concatenate([left, right]), np.concatenate([right, left])
    sym = CandidatePairs(
        left=both[0],
        right=both[1],
        score=np.concatenate([dup, dup]).astype(np.float32),
        n_left=n,
        n_right=n,
    )
    assert not duplicate_test("right", sym, np.concatenate([dup, dup]), 0.5, ids).flagged


def test_precision_interval_covers_the_true_precision_of_a_mixture() -> None:
    rng = np.random.default_rng(1)
    n_true, n_false = 800, 200
    true_scores = rng.normal(0.85, 0.05, n_true)
    false_scores = rng.normal(0.5, 0.1, n_false)  # a false pair scores like a best non-match
    selected = np.concatenate([true_scores, false_scores])
    null = rng.normal(0.5, 0.1, 2000)
    t = 0.6
    truth = (true_scores >= t).sum() / (selected >= t).sum()
    lo, hi = precision_interval(selected, null, t)
    assert lo <= truth <= hi
    assert hi - lo < 0.1
    assert abs(precision_at(selected, null, t, 0.5) - truth) < 0.03


def test_mixture_interval_is_the_mixtures_own_doubt_and_refuses_one_group() -> None:
    rng = np.random.default_rng(2)
    logits = np.concatenate([rng.normal(3.0, 1.0, 600), rng.normal(-4.0, 1.2, 3000)])
    scores = 1 / (1 + np.exp(-logits))
    post = mixture_posterior(scores)
    assert post is not None
    point = post[scores >= 0.5].mean()
    interval = mixture_interval(scores, 0.5, rounds=20)
    assert interval is not None
    lo, hi = interval
    assert lo - 0.01 <= point <= hi + 0.01 and hi - lo < 0.05
    # scores spread evenly: no two groups to estimate precision from (a single Gaussian
    # of logits can still be split in two, which is why dedupe also checks the estimate
    # against the known non-matches, below)
    assert mixture_interval(rng.uniform(0.0, 1.0, 3000), 0.5, rounds=20) is None


def test_dedupe_across_two_sources_says_its_estimates_disagree() -> None:
    """Abt and Buy records in one table: look-alike products within a source score like
    duplicates, and the score mixture's precision is far off. The known-non-match estimate
    disagrees, so the job says the precision is not known and widens the interval to
    cover the truth, instead of printing a confident number."""
    left = read_table(FIX / "abt_sample.csv", id_column="id")
    right = read_table(FIX / "buy_sample.csv", id_column="id")
    recs = [{"id": "L" + left.ids[i], **left.record(i)} for i in range(len(left))]
    recs += [{"id": "R" + right.ids[i], **right.record(i)} for i in range(len(right))]
    columns = sorted({k for r in recs for k in r})
    table = Table.from_records([{c: r.get(c) for c in columns} for r in recs], id_column="id")
    gold = {frozenset(("L" + a, "R" + b)) for a, b in S.gold("abt_buy_gold.csv")}
    res = dedupe(table, {}, encoder=S.HashEncoder(), index_factory=S.index_factory())
    c, ids = res.candidates, table.ids
    accepted = np.flatnonzero(res.accepted)
    truth = np.mean([frozenset((ids[c.left[p]], ids[c.right[p]])) in gold for p in accepted])
    assert abs(res.choice.est_precision - truth) > 0.2  # the mixture alone is wrong here
    assert res.choice.reliable is False
    assert any("estimates disagree" in w for w in res.warnings)
    lo, hi = res.choice.interval
    assert lo <= truth <= hi


def _dup_right(right: Table, rows: range) -> Table:
    """The right table with the given rows repeated under new ids (exact duplicates)."""
    recs = [{"id": right.ids[i], **right.record(i)} for i in range(len(right))]
    recs += [{**recs[i], "id": f"{recs[i]['id']}-copy"} for i in rows]
    return Table.from_records(recs, id_column="id", name=right.name)


def test_link_detects_duplicates_on_the_right_and_says_so() -> None:
    left = read_table(FIX / "dblp_sample.csv", encoding="latin-1")
    right = read_table(FIX / "acm_sample.csv", encoding="latin-1")
    gold = S.gold("dblp_acm_gold.csv")
    kw = dict(encoder=S.HashEncoder(), index_factory=S.index_factory())
    clean = link(left, right, {"fields": S.DBLP_FIELDS}, **kw)
    assert clean.assignment == "one_to_one"
    assert not any(d.flagged for d in clean.duplicates)
    lo, hi = clean.choice.interval
    assert lo <= clean.choice.est_precision <= hi
    half = len(right) // 2
    dup = link(left, _dup_right(right, range(half)), {"fields": S.DBLP_FIELDS}, **kw)
    flagged = {d.side for d in dup.duplicates if d.flagged}
    assert flagged == {"right"}
    assert dup.assignment == "one_to_many"
    assert any("right table appears to hold duplicates" in w for w in dup.warnings)
    # a left record may now take both copies of its match
    matched = {(a, b) for a, b, _ in dup.matches()}
    gold_set = set(gold)
    hits = sum((a, b) in gold_set or (a, b.removesuffix("-copy")) in gold_set for a, b in matched)
    assert hits / len(matched) > 0.8
    copies = sum(b.endswith("-copy") for _, b in matched)
    assert copies > 0


def test_a_target_met_only_by_the_top_pairs_is_reported() -> None:
    from types import SimpleNamespace

    from veclink.linkage.pipeline import _Job
    from veclink.linkage.scoring import ThresholdCurve, choose_threshold
    from veclink.linkage.spec import LinkageSpec

    # 100 thresholds: the top 5 estimated at 0.95 precision, everything below at 0.6
    thresholds = np.linspace(1.0, 0.01, 100)
    accepted = np.arange(1, 101, dtype=np.float64) * 10
    precision = np.where(np.arange(100) < 5, 0.95, 0.6)
    true_above = precision * accepted
    curve = ThresholdCurve(thresholds, accepted, precision, true_above / true_above.max())
    job = SimpleNamespace(spec=LinkageSpec())
    choice = choose_threshold(curve, 0.9)
    assert choice.target_met and choice.est_recall < 0.1
    said = _Job._narrow_target(job, curve, choice)  # type: ignore[arg-type]
    assert said is not None and "met only by the top pairs" in said and "--precision 0" in said
    # a target met with most of the matches: nothing to say
    wide = ThresholdCurve(thresholds, accepted, np.full(100, 0.95), accepted / accepted.max())
    assert _Job._narrow_target(job, wide, choose_threshold(wide, 0.9)) is None  # type: ignore[arg-type]
    # no target: nothing to say
    free = SimpleNamespace(spec=LinkageSpec(precision=0.0))
    assert _Job._narrow_target(free, curve, choose_threshold(curve, 0.0)) is None  # type: ignore[arg-type]
