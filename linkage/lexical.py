"""A lexical view of records: hashed character 3-gram TF-IDF, sparse, unit length.

Sentence embeddings blur model numbers and typos ("PSLX350H" vs "PS-LX350H", "setreet");
character n-grams keep them. A record touches a few dozen of the ``dim`` buckets, so the
vectors are held sparse (CSR): memory grows with the grams, not with ``dim`` (a dense 4096-d
view was 16 KiB per record). Their cosine is a comparison feature. For blocking they are
projected by signed hashing to a small dense ``blocking_dim`` (inner products are kept in
expectation) so that they share a `VectorIndex` with the embeddings: blocking indexes
``[sqrt(1-w) * emb, sqrt(w) * lex]`` whose inner product is ``(1-w) * cos_emb + w * cos_lex``.

The IDF weights are fitted once on the texts of a job and kept, so a record matched
later (`Matcher`) gets the same vector it would have had in the batch job.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import zlib
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.sparse as sp

#: texts counted at a time (bounds the Python lists of one chunk)
TEXT_CHUNK = 4096
_NON_WORD = re.compile(r"[^0-9a-z\s]+")


def _grams(text: str, n: int) -> list[str]:
    # per word, padded with spaces (like sklearn's char_wb), lowercase; punctuation inside a
    # word is dropped so that "PS-LX350H" and "PSLX350H" share their grams
    out: list[str] = []
    for word in _NON_WORD.sub("", text.lower()).split():
        if not word:
            continue
        padded = f" {word} "
        if len(padded) <= n:
            out.append(padded)
        else:
            out.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return out


def _bucket(gram: str, dim: int) -> int:
    # crc32 is stable across processes (hash() is not)
    return zlib.crc32(gram.encode("utf-8")) % dim


@dataclasses.dataclass
class LexicalVectorizer:
    """Hashed char n-gram TF-IDF (sublinear tf, smoothed idf), L2-normalised, sparse float32."""

    dim: int = 4096
    n: int = 3
    #: idf per bucket, fitted by ``fit``
    idf: np.ndarray | None = None

    def _counts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(row, bucket, count)`` of every bucket a text touches, rows in order."""
        rows, cols, vals = [], [], []
        for i, text in enumerate(texts):
            buckets: dict[int, int] = {}
            for g in _grams(text, self.n):
                b = _bucket(g, self.dim)
                buckets[b] = buckets.get(b, 0) + 1
            rows += [i] * len(buckets)
            cols += list(buckets)
            vals += list(buckets.values())
        return np.asarray(rows, np.int64), np.asarray(cols, np.int64), np.asarray(vals, np.float32)

    def _chunks(
        self, texts: Sequence[str]
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """``(texts in the chunk, *_counts)`` per chunk: the Python lists stay small."""
        for start in range(0, len(texts), TEXT_CHUNK):
            chunk = texts[start : start + TEXT_CHUNK]
            yield (len(chunk), *self._counts(chunk))

    def fit(self, texts: Sequence[str]) -> LexicalVectorizer:
        df = np.zeros(self.dim, np.float64)
        for _, _, cols, _ in self._chunks(texts):
            df += np.bincount(cols, minlength=self.dim)
        self.idf = (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Unit TF-IDF rows, ``(len(texts), dim)`` CSR float32 (all-zero rows stay zero)."""
        if self.idf is None:
            raise RuntimeError("LexicalVectorizer.transform called before fit")
        idf = self.idf
        blocks = []
        for n, rows, cols, counts in self._chunks(texts):
            vals = (1 + np.log(counts)) * idf[cols]
            norms = np.sqrt(np.bincount(rows, np.square(vals, dtype=np.float64), minlength=n))
            norms[norms == 0] = 1
            vals = (vals / norms[rows]).astype(np.float32)
            # each (row, bucket) comes once and rows in order: CSR straight from them
            indptr = np.zeros(n + 1, np.int64)
            np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
            block = sp.csr_matrix((vals, cols.astype(np.int32), indptr), shape=(n, self.dim))
            block.sort_indices()
            blocks.append(block)
        if not blocks:
            return sp.csr_matrix((0, self.dim), dtype=np.float32)
        return blocks[0] if len(blocks) == 1 else sp.vstack(blocks, format="csr")


def project(lexical: sp.csr_matrix, dim: int) -> np.ndarray:
    """Dense unit rows of ``lexical`` after signed hashing of its buckets into ``dim``.

    Each bucket goes to a fixed bucket of ``dim`` with a fixed sign (both from crc32, so
    stable across processes), which keeps inner products in expectation; rows are then
    renormalised. With ``dim >= lexical.shape[1]`` the rows are returned as they are.
    """
    n, width = lexical.shape
    if dim >= width:
        return np.ascontiguousarray(lexical.toarray(), dtype=np.float32)
    target, sign = _signed_buckets(width, dim)
    idx = lexical.indices
    moved = sp.csr_matrix(
        (lexical.data * sign[idx], target[idx], lexical.indptr.copy()), shape=(n, dim)
    )
    moved.sum_duplicates()
    out = moved.toarray().astype(np.float32, copy=False)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1
    out /= norms
    return out


@functools.lru_cache(maxsize=8)
def _signed_buckets(width: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    codes = np.array([zlib.crc32(b"lexproj%d" % b) for b in range(width)], dtype=np.uint64)
    target = (codes % np.uint64(dim)).astype(np.int32)
    sign = np.where((codes >> np.uint64(31)) & np.uint64(1), 1.0, -1.0).astype(np.float32)
    return target, sign


def combine_views(
    semantic: np.ndarray,
    lexical: sp.csr_matrix | None,
    lexical_weight: float,
    lexical_dim: int,
) -> np.ndarray:
    """``[sqrt(1-w) * semantic, sqrt(w) * project(lexical)]``: inner product = weighted cosines.

    ``lexical_dim`` is the dimension of the projected lexical part (see `project`).
    """
    if lexical is None or lexical_weight == 0:
        return np.ascontiguousarray(semantic, dtype=np.float32)
    w = float(lexical_weight)
    out = np.empty(
        (semantic.shape[0], semantic.shape[1] + min(lexical_dim, lexical.shape[1])), np.float32
    )
    out[:, : semantic.shape[1]] = np.sqrt(1 - w) * semantic
    out[:, semantic.shape[1] :] = np.sqrt(w) * project(lexical, lexical_dim)
    return out
