"""Torch search path of the partitioned index, used when CUDA is present.

On a GPU a per-posting loop of small matrix products is dominated by launch and transfer
overhead, so the probed postings of a query batch are gathered into one contiguous block,
moved to the device once, and scored with one matmul per query chunk; entries of postings a
query did not probe, and stale entries, are masked to -inf before ``topk``. The vectors
scanned per query are counted exactly as on the CPU path (the sizes of its probed postings).
"""

from __future__ import annotations

import functools
import glob
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from veclink.index.partitioned import PartitionedIndex

#: queries per matmul, bounding the (chunk, gathered entries) score matrix on the device
QUERY_CHUNK = 256


@functools.cache
def _torch() -> Any:
    try:
        import torch
    except ImportError as err:  # torch is a core dependency; this only names the failure
        raise ImportError("the GPU search path needs torch: pip install torch") from err
    return torch


@functools.cache
def cuda_available() -> bool:
    """True when torch is importable and sees a CUDA device (checked once per process)."""
    # without an NVIDIA device node there is no CUDA: skip importing torch just to ask
    if "torch" not in sys.modules and not glob.glob("/dev/nvidia*"):
        return False
    try:
        return bool(_torch().cuda.is_available())
    except ImportError:
        return False


def resolve_device(option: str | None) -> str | None:
    """The torch device to search on, or None for the numpy/BLAS path.

    ``"auto"`` picks ``"cuda"`` when present; ``"cpu"`` forces the torch path on the CPU
    (used by tests to check it against the numpy path on machines without a GPU).
    """
    if option in (None, "numpy"):
        return None
    if option == "auto":
        return "cuda" if cuda_available() else None
    return option


def scan_postings_torch(
    index: PartitionedIndex,
    q: np.ndarray,
    k: int,
    dist: np.ndarray,
    pids: np.ndarray,
    probe: np.ndarray,
    device: str,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Same result as `veclink.index.scan.scan_postings` for the given probe lists."""
    torch = _torch()
    nq = len(q)
    uniq = np.unique(pids[probe])
    views = [index.parts[p].view() for p in uniq.tolist()]
    sizes = np.array([v[0].size for v in views], dtype=np.int64)
    # a replicated id can fill up to `replicas` slots: take that many more, dedupe, cut to k
    width = k * int(index.options["replicas"])
    out_s = np.full((nq, width), -np.inf, dtype=np.float32)
    out_i = np.full((nq, width), -1, dtype=np.int64)
    if not sizes.sum():
        return out_s[:, :k], out_i[:, :k], 0
    ids = np.concatenate([v[0] for v in views])
    ver = np.concatenate([v[1] for v in views])
    owner = np.repeat(np.arange(uniq.size), sizes)  # column of each entry's posting in `uniq`
    valid = index.versions.current(ids, ver)
    # (nq, n_postings) probe matrix: which gathered postings each query scans
    col = np.searchsorted(uniq, pids)
    allowed = np.zeros((nq, uniq.size), dtype=bool)
    rows = np.broadcast_to(np.arange(nq)[:, None], pids.shape)
    allowed[rows[probe], col[probe]] = True
    scanned = int((allowed * sizes[None, :]).sum())

    vecs = torch.from_numpy(np.concatenate([v[2] for v in views])).to(device)
    t_owner = torch.from_numpy(owner).to(device)
    t_valid = torch.from_numpy(valid).to(device)
    t_allowed = torch.from_numpy(allowed).to(device)
    sq = (vecs * vecs).sum(1) if index.metric == "l2" else None
    kk = min(width, ids.size)
    for a in range(0, nq, QUERY_CHUNK):
        tq = torch.from_numpy(q[a : a + QUERY_CHUNK]).to(device)
        scores = tq @ vecs.T
        if sq is not None:
            scores = 2 * scores - sq[None, :] - (tq * tq).sum(1)[:, None]
        mask = t_allowed[a : a + QUERY_CHUNK][:, t_owner] & t_valid[None, :]
        scores = scores.masked_fill(~mask, float("-inf"))
        top_s, top_c = torch.topk(scores, kk, dim=1)
        out_s[a : a + QUERY_CHUNK, :kk] = top_s.cpu().numpy()
        out_i[a : a + QUERY_CHUNK, :kk] = ids[top_c.cpu().numpy()]
    if width > k:
        from veclink.index.scan import drop_duplicate_ids

        out_i[np.isneginf(out_s)] = -1
        drop_duplicate_ids(out_s, out_i)
        order = np.argsort(-out_s, axis=1, kind="stable")[:, :k]
        out_s = np.take_along_axis(out_s, order, 1)
        out_i = np.take_along_axis(out_i, order, 1)
    out_i[np.isneginf(out_s)] = -1
    return out_s, out_i, scanned
