"""Record linkage and entity matching on top of the encoders and the vector index.

Stages with typed results: records -> text (field-aware serialisation) -> blocking (kNN in
a `VectorIndex` both ways, exact keys) -> `CandidatePairs` -> comparison (`Features`) ->
scoring (self-trained without labels, calibrated with labels, optional LLM judge) ->
selection (one-to-one) and a threshold meeting a precision target -> clustering.

    from veclink.linkage import link, dedupe, LinkageSpec

    result = link("left.csv", "right.csv", {"left_id": "id", "precision": 0.9})
    result.write_csv("pairs.csv")
    matcher = result.matcher()          # incremental: one record at a time
"""

from __future__ import annotations

from veclink.linkage.active import Question
from veclink.linkage.blocking import CandidatePairs
from veclink.linkage.compare import Features
from veclink.linkage.evaluate import PairMetrics, cluster_pairs, pair_metrics, read_pairs
from veclink.linkage.inputs import prepare_inputs
from veclink.linkage.labels import LabelledPair, read_labels
from veclink.linkage.matcher import MatchCandidate, Matcher, MatchResult
from veclink.linkage.pipeline import dedupe, link
from veclink.linkage.results import DedupeResult, LinkResult
from veclink.linkage.spec import BlockingSpec, FieldSpec, LinkageSpec, LLMJudgeSpec
from veclink.linkage.tables import Table, read_table

__all__ = [
    "BlockingSpec",
    "CandidatePairs",
    "DedupeResult",
    "Features",
    "FieldSpec",
    "LLMJudgeSpec",
    "LabelledPair",
    "LinkResult",
    "LinkageSpec",
    "MatchCandidate",
    "MatchResult",
    "Matcher",
    "PairMetrics",
    "Question",
    "Table",
    "cluster_pairs",
    "dedupe",
    "link",
    "pair_metrics",
    "prepare_inputs",
    "read_labels",
    "read_pairs",
    "read_table",
]
