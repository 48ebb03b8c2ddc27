"""End-to-end link / dedupe on small fixtures with a tiny deterministic encoder."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from veclink.linkage import (
    LabelledPair,
    cluster_pairs,
    dedupe,
    link,
    pair_metrics,
    read_table,
)

from tests.fixtures.linkage import support
from veclink.errors import InvalidArgument

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "linkage"


S = support
FEBRL_TYPES = support.FEBRL_TYPES


@pytest.fixture(scope="module")
def dblp():
    left = read_table(FIX / "dblp_sample.csv", encoding="latin-1")
    right = read_table(FIX / "acm_sample.csv", encoding="latin-1")
    return left, right, S.gold("dblp_acm_gold.csv")


@pytest.fixture(scope="module")
def dblp_result(dblp):
    left, right, _ = dblp
    stages = []
    result = link(
        left,
        right,
        {"fields": S.DBLP_FIELDS},
        encoder=S.HashEncoder(),
        index_factory=S.index_factory(),
        progress=lambda s, f: stages.append((s, f)),
    )
    return result, stages


def test_link_without_labels_meets_the_precision_target(dblp, dblp_result) -> None:
    result, stages = dblp_result
    _, _, gold = dblp
    m = pair_metrics([(a, b) for a, b, _ in result.matches()], gold)
    assert result.mode == "unsupervised"
    assert m.precision >= result.spec.precision - 0.03
    assert m.f1 >= 0.95
    assert result.choice.target_met and result.choice.est_precision >= 0.9
    assert (
        result.candidates.pair_completeness(
            {(result.left.position()[a], result.right.position()[b]) for a, b in gold}
        )
        == 1.0
    )
    assert result.candidates.reduction_ratio > 0.9
    assert [s for s, f in stages if f == 1.0] == [
        "embed",
        "block",
        "compare",
        "score",
        "select",
        "check",
    ]
    # one-to-one: no id appears twice
    lefts = [a for a, _, _ in result.matches()]
    rights = [b for _, b, _ in result.matches()]
    assert len(set(lefts)) == len(lefts) and len(set(rights)) == len(rights)


def test_matches_csv_and_entities(dblp_result, tmp_path: Path) -> None:
    result, _ = dblp_result
    n = result.write_csv(tmp_path / "pairs.csv")
    rows = list(csv.reader(open(tmp_path / "pairs.csv", encoding="utf-8")))
    assert rows[0] == ["left_id", "right_id", "score"] and len(rows) == n + 1
    scores = [float(r[2]) for r in rows[1:]]
    assert scores == sorted(scores, reverse=True) and min(scores) >= result.threshold - 1e-6
    ents = result.entities()
    assert len(ents) == len(result.left) + len(result.right)
    a, b, _ = result.matches()[0]
    by_record = {(side, rid): e for side, rid, e in ents}
    assert by_record[("left", a)] == by_record[("right", b)]


def test_supervised_with_labels_is_calibrated(dblp) -> None:
    left, right, gold = dblp
    rng = np.random.default_rng(0)
    labels = [LabelledPair(a, b, True) for a, b in gold[:40]]
    rights = list(right.ids)
    labels += [
        LabelledPair(a, rights[int(rng.integers(len(rights)))], False) for a, _ in gold[40:100]
    ]
    labels = [x for x in labels if x.match or (x.left_id, x.right_id) not in set(gold)]
    result = link(
        left,
        right,
        {"fields": S.DBLP_FIELDS},
        labels=labels,
        encoder=S.HashEncoder(),
        index_factory=S.index_factory(),
    )
    m = pair_metrics([(a, b) for a, b, _ in result.matches()], gold)
    assert result.mode == "supervised"
    assert m.f1 >= 0.95


def test_active_learning_asks_at_most_the_budget(dblp) -> None:
    left, right, gold = dblp
    gold_set = set(gold)
    asked = []

    def oracle(q):
        asked.append(q)
        assert q.left_id in left.position() and "title" in q.left
        return None if len(asked) == 1 else (q.left_id, q.right_id) in gold_set  # skip the first

    result = link(
        left,
        right,
        {"fields": S.DBLP_FIELDS},
        ask=oracle,
        budget=12,
        encoder=S.HashEncoder(),
        index_factory=S.index_factory(),
    )
    assert result.labels is not None and len(result.labels[0]) == 12
    assert len(asked) == 13
    m = pair_metrics([(a, b) for a, b, _ in result.matches()], gold)
    assert m.f1 >= 0.9


def test_incremental_matcher_equals_batch(dblp, dblp_result) -> None:
    left, _, gold = dblp
    result, _ = dblp_result
    matcher = result.matcher(index_factory=S.index_factory())
    for i, rid in enumerate(left.ids):
        out = matcher.match({"id": rid, **left.record(i)})
        assert len(out.candidates) <= 5
        assert [c.score for c in out.candidates] == sorted(
            [c.score for c in out.candidates], reverse=True
        )
    incremental = [(rid, ent.split(":", 1)[1]) for rid, ent in matcher.assignments().items()]
    batch = pair_metrics([(a, b) for a, b, _ in result.matches()], gold)
    inc = pair_metrics(incremental, gold)
    # batch scores are cross-fitted (each pair by the fold model that did not train on its
    # record), incremental ones by the fold average: a borderline pair may land on the other
    # side of the threshold. On 120 gold pairs one record is 0.0042 of F1; allow two
    # (full-size gaps are in BENCHMARKS.md)
    assert abs(inc.f1 - batch.f1) <= 0.0085
    with pytest.raises(InvalidArgument, match="already matched"):
        matcher.match({"id": left.ids[0], **left.record(0)})
    peek = matcher.match({"title": "A brand new paper"}, record_id="new", assign=False)
    assert peek.assigned_entity_id is None


def test_dedupe_clusters_febrl_sample() -> None:
    table = read_table(FIX / "febrl1_sample.csv", id_column="rec_id")
    spec = {"left_id": "rec_id", "fields": [{"name": k, "type": v} for k, v in FEBRL_TYPES.items()]}
    result = dedupe(table, spec, encoder=S.HashEncoder(), index_factory=S.index_factory())
    truth = [re.match(r"rec-(\d+)-", i).group(1) for i in table.ids]
    m = pair_metrics(
        cluster_pairs(table.ids, result.entity_ids()),
        cluster_pairs(table.ids, truth),
        symmetric=True,
    )
    assert m.recall >= 0.9 and m.f1 >= 0.8
    ids = result.entity_ids()
    assert all(
        table.position()[e] <= table.position()[r] for r, e in zip(table.ids, ids, strict=True)
    )
    # incremental: a new copy of a known record joins its entity
    matcher = result.matcher(index_factory=S.index_factory())
    rec = table.record(0)
    out = matcher.match({**rec, "rec_id": "copy-0"})
    assert out.assigned_entity_id == ids[0]
    again = matcher.match({**rec, "rec_id": "copy-1"})
    assert again.assigned_entity_id == ids[0]
    assert any(c.record_id == "copy-0" for c in again.candidates) or len(again.candidates) >= 1
    stranger = matcher.match({"given_name": "zyxw", "surname": "qqqq", "rec_id": "z"})
    assert stranger.assigned_entity_id == "z"


def test_bad_input_fails_before_any_work(tmp_path: Path) -> None:
    enc = S.HashEncoder()
    dup = tmp_path / "dup.csv"
    dup.write_text("id,title\n1,a\n1,b\n")
    with pytest.raises(InvalidArgument, match="duplicate ids"):
        link(dup, FIX / "acm_sample.csv", encoder=enc, encoding="latin-1")
    with pytest.raises(InvalidArgument, match="cannot decode"):  # an explicit encoding wins
        link(FIX / "dblp_sample.csv", FIX / "acm_sample.csv", encoder=enc, encoding="utf-8")
    with pytest.raises(InvalidArgument, match="labels: 1 left id"):
        link(
            FIX / "dblp_sample.csv",
            FIX / "acm_sample.csv",
            {"fields": S.DBLP_FIELDS},
            labels=[LabelledPair("nope", "1", True)],
            encoder=enc,
            encoding="latin-1",
        )
    assert enc.calls == 0


def _index_kinds() -> list[str]:
    try:
        from veclink.index import INDEX_KINDS
    except ImportError:
        return []
    return sorted(INDEX_KINDS)


@pytest.mark.parametrize("kind", _index_kinds())
def test_link_through_every_registered_index_kind(dblp, kind: str) -> None:
    """Blocking goes through `create_index`; every index kind must give a working job."""
    left, right, gold = dblp
    spec = {"fields": S.DBLP_FIELDS, "blocking": {"index_kind": kind}}
    result = link(left, right, spec, encoder=S.HashEncoder())
    assert pair_metrics([(a, b) for a, b, _ in result.matches()], gold).f1 >= 0.95


def test_exact_blocking_keys_add_candidates(dblp) -> None:
    left, right, gold = dblp
    tight = {"k": 1, "min_k": 1, "margin": 0.0}
    base = link(
        left,
        right,
        {"fields": S.DBLP_FIELDS, "blocking": tight},
        encoder=S.HashEncoder(),
        index_factory=S.index_factory(),
    )
    keyed = link(
        left,
        right,
        {"fields": S.DBLP_FIELDS, "blocking": {**tight, "keys": [["title"]]}},
        encoder=S.HashEncoder(),
        index_factory=S.index_factory(),
    )
    lp, rp = left.position(), right.position()
    rows = {(lp[a], rp[b]) for a, b in gold}
    assert len(keyed.candidates) > len(base.candidates)
    assert keyed.candidates.pair_completeness(rows) >= base.candidates.pair_completeness(rows)
    # the incremental path finds key matches too
    matcher = keyed.matcher(index_factory=S.index_factory())
    a, b = gold[0]
    rec = left.record(lp[a])
    out = matcher.match({"id": a, **rec}, k=20)
    assert b in {c.record_id for c in out.candidates}


def test_link_without_fields_aligns_columns_and_keeps_the_unaligned(tmp_path: Path) -> None:
    """Abt-Buy sample, Buy's columns renamed and reordered; Buy's manufacturer has no partner."""
    import json

    from veclink.linkage import Table

    abt, buy = read_table(FIX / "abt_sample.csv"), read_table(FIX / "buy_sample.csv")
    renamed = {"manufacturer": "brand", "price": "cost", "name": "title", "description": "desc"}
    buy2 = Table(
        name="buy",
        id_column="id",
        ids=buy.ids,
        columns=tuple(renamed.values()),
        data={new: buy.column(old) for old, new in renamed.items()},
        info=buy.info,
    )
    enc = S.HashEncoder()
    result = link(abt, buy2, encoder=enc, index_factory=S.index_factory())
    al = result.alignment
    assert al is not None
    pairs = {(m.left, m.right) for m in al.matches}
    assert ("name", "title") in pairs and ("price", "cost") in pairs
    assert "brand" in al.right_only
    fields = {f.name: f for f in result.model.fields}
    assert fields["name"].right_column == "title" and fields["price"].type == "number"
    # long text fields come last; the unaligned column is in the full and embedded texts
    types = [f.type for f in result.model.fields]
    assert types == sorted(types, key=lambda t: t == "text")
    i = next(i for i, v in enumerate(buy2.column("brand")) if v)
    brand = buy2.column("brand")[i]
    assert brand in result.right_views.full_texts[i]
    assert result.right_views.texts[i].endswith(brand[:300]) or brand in result.right_views.texts[i]
    gold = S.gold("abt_buy_gold.csv")
    assert pair_metrics([(a, b) for a, b, _ in result.matches()], gold).f1 >= 0.5
    # the summary is JSON-ready and names what was read and aligned
    summary = json.loads(json.dumps(result.summary(), allow_nan=False))
    assert summary["mode"] == "link" and summary["records"] == {"left": 80, "right": 80}
    assert summary["pairs"] == len(result.matches())
    assert summary["alignment"] == al.to_dict()
    assert summary["inputs"]["left"]["delimiter"] == ","
    assert summary["inputs"]["right"]["encoding"] == buy.info.encoding
    assert [s["name"] for s in summary["stages"]][:2] == ["align", "embed"]
    for key in ("threshold", "estimated_precision", "estimated_recall_among_candidates", "fields"):
        assert key in summary
    # the HTML report shows how the files were read and the alignment
    from veclink.linkage.report import write_report

    write_report(result, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Column alignment" in page and "<td>title</td>" in page and "<td>brand</td>" in page
    # incremental matching reads the same unaligned columns from a new record
    matcher = result.matcher(index_factory=S.index_factory())
    out = matcher.match({"id": abt.ids[0], **abt.record(0)}, assign=False)
    assert out.candidates


def test_spec_fields_override_the_alignment_and_dedupe_summary() -> None:
    import json

    left = read_table(FIX / "dblp_sample.csv")
    right = read_table(FIX / "acm_sample.csv")
    result = link(
        left,
        right,
        {"fields": [{"name": "title", "type": "text"}]},
        encoder=S.HashEncoder(),
        index_factory=S.index_factory(),
    )
    assert result.alignment is None and [f.name for f in result.model.fields] == ["title"]
    assert result.model.unaligned == (("authors", "venue", "year"),) * 2
    # the spec's fields alone are embedded; every column is in the full text
    rec = right.record(0)
    assert rec["venue"] not in result.right_views.texts[0]
    assert rec["venue"] in result.right_views.full_texts[0]
    table = read_table(FIX / "febrl1_sample.csv", id_column="rec_id")
    dd = dedupe(
        table, {"left_id": "rec_id"}, encoder=S.HashEncoder(), index_factory=S.index_factory()
    )
    assert {m.left: m.type for m in dd.alignment.matches}["date_of_birth"] == "date"
    s = json.loads(json.dumps(dd.summary(), allow_nan=False))
    assert s["mode"] == "dedupe" and s["records"] == {"table": 120}
    assert s["entities"] == len(set(dd.entity_ids()))
    assert s["inputs"]["table"]["encoding"] == "utf-8"
