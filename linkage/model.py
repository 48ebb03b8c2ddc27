"""`LinkModel`: the fitted parts of a job, enough to treat new records the way the job did.

It turns a table into its views (embedded text, full text, embeddings, lexical vectors,
blocking vectors) and scores pairs; the batch pipeline and the incremental `Matcher`
both go through it, which is what keeps their results equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from veclink.linkage.blocking import VectorSource
from veclink.linkage.classifier import PairClassifier
from veclink.linkage.compare import Comparator, Features
from veclink.linkage.lexical import LexicalVectorizer, combine_views
from veclink.linkage.scoring import AveragedClassifier, initial_scores
from veclink.linkage.serialize import serialize
from veclink.linkage.spec import BlockingSpec, FieldSpec, LinkageSpec
from veclink.linkage.tables import Table

Progress = Callable[[str, float], None]
#: texts per encoder call: large, so that the encoder's length sorting and dedupe of
#: identical texts work across many records (padding is most of a CPU forward's waste)
EMBED_CHUNK = 4096


@dataclasses.dataclass
class Views:
    """Derived representations of one table (or of a few new records)."""

    texts: list[str]  # embedded text (``embed`` fields, then unaligned columns)
    full_texts: list[str]  # every non-id column: lexical view, word and model-number overlap
    semantic: np.ndarray  # unit embeddings
    lexical: sp.csr_matrix | None  # unit char 3-gram TF-IDF vectors (sparse)

    def blocking(self, spec: BlockingSpec, rows: np.ndarray | None = None) -> np.ndarray:
        """Dense unit blocking vectors of ``rows`` (all rows by default)."""
        sem, lex = self.semantic, self.lexical
        if rows is not None:
            sem, lex = sem[rows], None if lex is None else lex[rows]
        return combine_views(sem, lex, spec.lexical_weight, spec.lexical_blocking_dim)

    def blocking_source(self, spec: BlockingSpec) -> VectorSource:
        """The blocking vectors, made a chunk of rows at a time (see `VectorSource`)."""
        first = self.blocking(spec, np.zeros(0, np.int64))
        return VectorSource(len(self.semantic), first.shape[1], lambda r: self.blocking(spec, r))

    def extend(self, other: Views) -> None:
        self.texts += other.texts
        self.full_texts += other.full_texts
        self.semantic = np.vstack([self.semantic, other.semantic])
        if self.lexical is not None and other.lexical is not None:
            self.lexical = sp.vstack([self.lexical, other.lexical], format="csr")


@dataclasses.dataclass
class LinkModel:
    spec: LinkageSpec
    fields: tuple[FieldSpec, ...]
    encoder: Any
    lexical: LexicalVectorizer | None = None
    comparator: Comparator | None = None
    #: anything with ``score(features) -> P(match)``: a PairClassifier or fold average
    classifier: PairClassifier | AveragedClassifier | None = None
    threshold: float = 0.5
    #: link jobs: how records pair up (resolved from the spec's ``assignment``)
    assignment: str = "one_to_one"
    #: non-id columns no field uses, per side (left, right): compared as part of the
    #: record's whole text; embedded too (after the fields) when the fields were aligned
    #: automatically, not when the spec lists them
    unaligned: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    def unaligned_on(self, side: str) -> tuple[str, ...]:
        return self.unaligned[0] if side == "left" else self.unaligned[1]

    def texts(self, table: Table, side: str) -> tuple[list[str], list[str]]:
        """(embedded texts, full texts) of a table's records, read as ``side``."""
        extra = self.unaligned_on(side)
        style = self.spec.serialization
        embed = serialize(table, self.fields, side, style, () if self.spec.fields else extra)
        all_fields = tuple(dataclasses.replace(f, embed=True) for f in self.fields)
        full = serialize(table, all_fields, side, style, extra)
        return embed, full

    def fit(self, texts: Sequence[str]) -> None:
        """Fit the lexical IDF and the comparator's word IDF on a job's full texts."""
        if self.spec.blocking.lexical_weight > 0:
            self.lexical = LexicalVectorizer(dim=self.spec.blocking.lexical_dim).fit(texts)
        self.comparator = Comparator(self.fields).fit(texts)

    def embed(
        self, texts: Sequence[str], report: Callable[[float], None] | None = None
    ) -> np.ndarray:
        """Embed in chunks, reporting the fraction done after each."""
        chunks = []
        for start in range(0, len(texts), EMBED_CHUNK):
            chunks.append(np.asarray(self.encoder.encode(list(texts[start : start + EMBED_CHUNK]))))
            if report:
                report(min(1.0, (start + EMBED_CHUNK) / max(len(texts), 1)))
        if not chunks:
            return np.zeros((0, self.encoder.dim), np.float32)
        return np.ascontiguousarray(np.vstack(chunks), dtype=np.float32)

    def views(
        self, table: Table, side: str, report: Callable[[float], None] | None = None
    ) -> Views:
        texts, full = self.texts(table, side)
        semantic = self.embed(texts, report)
        lexical = self.lexical.transform(full) if self.lexical is not None else None
        return Views(texts, full, semantic, lexical)

    def features(
        self,
        left: Table,
        right: Table,
        lv: Views,
        rv: Views,
        lrows: np.ndarray,
        rrows: np.ndarray,
        *,
        dedupe: bool = False,
    ) -> Features:
        if self.comparator is None:
            raise RuntimeError("LinkModel.fit must run before features")
        return self.comparator.compare(
            left,
            right,
            lrows,
            rrows,
            left_texts=lv.full_texts,
            right_texts=lv.full_texts if dedupe else rv.full_texts,
            left_views=(lv.semantic, lv.lexical),
            right_views=(rv.semantic, rv.lexical),
            right_side="left" if dedupe else "right",
        )

    def score(self, features: Features) -> np.ndarray:
        if self.classifier is None:
            return initial_scores(features.values)
        return self.classifier.score(features.values)
