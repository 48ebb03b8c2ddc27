"""Clustering accepted pairs into entities.

``components``: connected components of the accepted pairs. One wrong pair merges two
entities, and chains (A~B, B~C, C~D) merge records that do not resemble each other.

``correlation``: each component is then split by greedy agglomerative correlation
clustering. Every scored pair gets the weight ``score - threshold`` (positive: evidence
for "same", negative: against; a pair never scored counts 0, no evidence); clusters are
merged best average weight first while the total weight between them is positive. A
weak accepted pair next to strong rejections therefore no longer merges two entities.
"""

from __future__ import annotations

import numpy as np

_MAX_SPLIT = 2000  # components larger than this are left as they are (quadratic step)


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    parent = np.arange(n)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    return np.array([find(x) for x in range(n)], dtype=np.int64)


def cluster(
    n: int,
    left: np.ndarray,
    right: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    method: str = "correlation",
) -> np.ndarray:
    """Entity number per record (0..n_entities-1, numbered by first record).

    Args:
        n: number of records.
        left, right, scores: every scored pair (row numbers), accepted or not.
        threshold: pairs scoring >= threshold are accepted.
        method: ``components`` or ``correlation``.
    """
    acc = scores >= threshold
    roots = _components(n, left[acc], right[acc])
    if method == "correlation":
        roots = _split(roots, left, right, scores - threshold)
    _, labels = np.unique(roots, return_inverse=True)
    # renumber by first occurrence so entity numbers are stable and readable
    first: dict[int, int] = {}
    out = np.empty(n, dtype=np.int64)
    for i, lab in enumerate(labels.tolist()):
        out[i] = first.setdefault(lab, len(first))
    return out


def _split(
    roots: np.ndarray, left: np.ndarray, right: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    sizes = np.bincount(roots, minlength=len(roots))
    big = sizes[roots] > 2
    if not big.any():
        return roots
    out = roots.copy()
    same = (roots[left] == roots[right]) & big[left]
    members: dict[int, list[int]] = {}
    for i in np.flatnonzero(big).tolist():
        members.setdefault(int(roots[i]), []).append(i)
    edges: dict[int, list[tuple[int, int, float]]] = {}
    for a, b, w in zip(
        left[same].tolist(), right[same].tolist(), weight[same].tolist(), strict=True
    ):
        edges.setdefault(int(roots[a]), []).append((a, b, w))
    for root, nodes in members.items():
        if len(nodes) > _MAX_SPLIT:
            continue
        for node, lab in _agglomerate(nodes, edges.get(root, [])).items():
            out[node] = lab
    return out


def _agglomerate(nodes: list[int], edges: list[tuple[int, int, float]]) -> dict[int, int]:
    """Greedy correlation clustering of one component; returns node -> cluster label (a node)."""
    cluster_of = {v: v for v in nodes}
    members = {v: [v] for v in nodes}
    # total weight between clusters (only pairs that were scored)
    link: dict[int, dict[int, float]] = {v: {} for v in nodes}
    for a, b, w in edges:
        if a == b:
            continue
        link[a][b] = link[a].get(b, 0.0) + w
        link[b][a] = link[b].get(a, 0.0) + w
    while True:
        best, pair = 0.0, None
        for c, nbrs in link.items():
            for d, w in nbrs.items():
                if c < d and w > 0:
                    avg = w / (len(members[c]) * len(members[d]))
                    if avg > best:
                        best, pair = avg, (c, d)
        if pair is None:
            break
        c, d = pair  # merge d into c
        members[c] += members.pop(d)
        for v in members[c]:
            cluster_of[v] = c
        for e, w in link.pop(d).items():
            if e == c:
                continue
            link[e].pop(d, None)
            link[c][e] = link[c].get(e, 0.0) + w
            link[e][c] = link[e].get(c, 0.0) + w
        link[c].pop(d, None)
    return cluster_of
