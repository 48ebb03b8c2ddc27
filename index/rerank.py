"""Search of quantised postings: faiss scans the codes, the best candidates are re-ranked.

With ``postings`` "fp16" or "int8" (`veclink.index.codecs`) the probed postings are
scanned by faiss's ``IndexIVFScalarQuantizer`` kernel on their codes, which keeps each
query's best ``k x rerank`` current entries (stale copies dropped by their version bits, as
in `veclink.index.scan`); those are re-scored exactly from the full float32 vectors, and the
best ``k`` returned. Scores are therefore exact; only which ids reach the re-rank depends on
the codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from veclink.index.postings import SLOT_MASK

if TYPE_CHECKING:
    from veclink.index.partitioned import PartitionedIndex

#: queries re-ranked per block, bounding the gathered (queries, candidates, dim) block
RERANK_CHUNK = 256


def scan_quantized(
    index: PartitionedIndex, q: np.ndarray, k: int, nprobe: int, eps: float | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (scores (nq, k), ids (nq, k), vectors scanned); ids are the caller's."""
    from veclink.index.scan import keep_current, scan_probed  # scan imports this module

    store, vm = index.store, index.versions
    nq = len(q)
    replicas = int(index.options["replicas"])
    want = k * int(index.options["rerank"])
    depth = want * replicas + k // 2 + 4
    scores, keys, lists, sizes = scan_probed(index, q, nprobe, eps, depth)
    scanned = int(sizes.sum())
    entries = sizes.sum(1)
    cand = np.full((nq, want), -1, dtype=np.int64)
    rows = np.arange(nq)
    while True:
        slots = keys & SLOT_MASK
        current = vm.current_keys(keys, slots)
        found = keep_current(scores, slots, current, replicas)
        # each row's current entries in faiss's order (best first), up to `want`
        order = np.argsort(found < 0, axis=1, kind="stable")[:, :want]
        got = np.take_along_axis(found, order, 1)
        cand[rows, : got.shape[1]] = got
        short = ((found >= 0).sum(1) < want) & (entries[rows] > depth)
        rows = rows[short]
        if not rows.size:
            break
        depth = int(min(4 * depth, entries[rows].max()))
        scores, keys = store.scan(q[rows], depth, lists[rows])
    out_s, out_i = rerank(index, q, cand, k)
    return out_s, out_i, scanned


def rerank(
    index: PartitionedIndex, q: np.ndarray, cand: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``k`` of the candidate slots ``cand`` (nq, c; -1: none): (scores, ids)."""
    full = index.store.full
    assert full is not None
    nq, c = cand.shape
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    kk = min(k, c)
    for a in range(0, nq, RERANK_CHUNK):
        sl = cand[a : a + RERANK_CHUNK]
        qs = q[a : a + RERANK_CHUNK]
        valid = sl >= 0
        x = full.take(np.where(valid, sl, 0).ravel()).reshape(*sl.shape, -1)
        if index.metric == "l2":
            diff = x - qs[:, None, :]
            s = -np.einsum("ijk,ijk->ij", diff, diff)
        else:
            s = np.matmul(x, qs[:, :, None])[..., 0]
        s[~valid] = -np.inf
        top = np.argsort(-s, axis=1, kind="stable")[:, :kk]
        ts = np.take_along_axis(s, top, 1)
        ti = np.take_along_axis(sl, top, 1)
        ok = np.isfinite(ts) & (ti >= 0)
        out_s[a : a + RERANK_CHUNK, :kk] = np.where(ok, ts, -np.inf)
        out_i[a : a + RERANK_CHUNK, :kk] = np.where(
            ok, index.versions.ext.take(ti, mode="clip"), -1
        )
    return out_s, out_i
