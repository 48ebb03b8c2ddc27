"""The centroid graph (HNSW routing above ``graph_min_partitions``) against exact routing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from veclink.index import FlatIndex, PartitionedIndex, open_index
from veclink.index.centroid_graph import CentroidGraph
from veclink.index.centroids import CentroidTable


def clustered(rng: np.random.Generator, n: int, d: int, centres: int = 40) -> np.ndarray:
    c = rng.normal(size=(centres, d)).astype(np.float32) * 2
    return c[rng.integers(0, centres, n)] + rng.normal(size=(n, d)).astype(np.float32)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_graph_routing_tracks_exact_routing_under_random_splits_and_merges(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = 24
    graph = CentroidTable(d, graph_min=0)
    exact = CentroidTable(d)  # never builds a graph
    pool = clustered(rng, 6000, d)
    next_pid, removed = 0, set()
    for _ in range(400):  # start with 400 centroids
        graph.append(next_pid, pool[next_pid])
        exact.append(next_pid, pool[next_pid])
        next_pid += 1
        if graph.graph_due():  # the first build, as the rebalancer would do it
            graph.install_graph(CentroidGraph(d, graph.pids, graph.cents))
    assert graph.graph is not None
    for _ in range(1500):  # a random sequence of splits (move + add) and merges (drop)
        op = rng.random()
        live = graph.pids
        if op < 0.5:
            pid = int(live[rng.integers(live.size)])
            row = graph.rows(np.array([pid]))
            moved = graph.cents[row] + 0.3 * rng.normal(size=(1, d)).astype(np.float32)
            graph.move(row, moved)
            exact.move(exact.rows(np.array([pid])), moved)
            new = pool[next_pid % len(pool)] + 0.1 * rng.normal(size=d).astype(np.float32)
            graph.append(next_pid, new)
            exact.append(next_pid, new)
            next_pid += 1
        elif live.size > 200:
            pid = int(live[rng.integers(live.size)])
            graph.drop(pid)
            exact.drop(pid)
            removed.add(pid)
        if graph.graph_due():  # too many tombstones: rebuild from the table
            graph.install_graph(CentroidGraph(d, graph.pids, graph.cents))
    assert graph.graph is not None
    assert sorted(graph.pids.tolist()) == sorted(exact.pids.tolist())
    # the row map follows the swaps of `drop`: each partition's row holds its centroid
    np.testing.assert_array_equal(
        graph.cents[graph.rows(exact.pids)], exact.cents[np.arange(exact.n)]
    )
    q = clustered(np.random.default_rng(seed + 100), 300, d)
    for by_ip in (False, True):
        dist_g, pids_g = graph.nearest(q, 16, by_ip=by_ip)
        dist_e, pids_e = exact.nearest(q, 16, by_ip=by_ip)
        assert not removed & set(pids_g.ravel().tolist())
        assert overlap(pids_g, pids_e) >= 0.95
        # the graph's distances are exact for the centroids it returns
        same = pids_g == pids_e
        np.testing.assert_allclose(dist_g[same], dist_e[same], rtol=1e-3, atol=1e-3)
    _, near_g = graph.nearest_projected(q)
    _, near_e = exact.nearest(q, 1)
    assert np.mean(near_g == near_e[:, 0]) >= 0.95
    rows = graph.neighbour_rows(q[0], 10)
    assert set(graph.pids[rows].tolist()) <= set(exact.pids.tolist())


def test_tombstones_are_never_returned_and_trigger_a_rebuild() -> None:
    rng = np.random.default_rng(5)
    d = 8
    table = CentroidTable(d, graph_min=0)
    x = rng.normal(size=(300, d)).astype(np.float32)
    for pid in range(300):
        table.append(pid, x[pid])
    table.install_graph(CentroidGraph(d, table.pids, table.cents))
    for pid in range(0, 300, 3):  # a third merged away
        table.drop(pid)
    assert table.graph is not None and table.graph_due()
    _, pids = table.nearest(x, 5)
    assert not (pids % 3 == 0).any()  # never a removed centroid, even for its own vector
    table.install_graph(CentroidGraph(d, table.pids, table.cents))
    assert not table.graph_due() and table.graph.dead == 0


def index_options(graph_min: int) -> dict:
    return dict(split_limit=32, merge_limit=8, graph_min_partitions=graph_min, background=False)


def test_partitioned_index_with_graph_routing_keeps_recall_and_rebuilds_on_load(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(7)
    d = 16
    x = clustered(rng, 6000, d)
    q = clustered(np.random.default_rng(8), 200, d)
    flat = FlatIndex(d, metric="ip")
    flat.add(np.arange(len(x)), x)
    flat.remove(np.arange(0, 1500))
    _, truth = flat.search(q, 10)  # over the live set
    with_graph = PartitionedIndex(d, metric="ip", path=str(tmp_path / "g"), **index_options(64))
    exact = PartitionedIndex(d, metric="ip", **index_options(1 << 30))
    for index in (with_graph, exact):
        for start in range(0, len(x), 500):
            index.add(np.arange(start, start + 500), x[start : start + 500])
        index.remove(np.arange(0, 1500))  # merges: tombstones in the graph
    stats = with_graph.stats()
    assert stats["centroid_graph"] and stats["partitions"] > 8 * 16
    assert not exact.stats()["centroid_graph"]
    _, got_g = with_graph.search(q, 10, nprobe=16)
    _, got_e = exact.search(q, 10, nprobe=16)
    removed = set(range(1500))
    assert not removed & set(got_g.ravel().tolist())
    # routing through the graph costs little recall against exact routing
    assert overlap(got_g, truth) >= overlap(got_e, truth) - 0.05
    with_graph.flush()
    with_graph.close()
    reopened = open_index(str(tmp_path / "g"))  # the graph is derived: built again on load
    assert reopened.stats()["centroid_graph"]
    _, again = reopened.search(q, 10, nprobe=16)
    assert overlap(again, truth) >= overlap(got_e, truth) - 0.05
    reopened.close()
    exact.close()


def test_graph_is_built_in_the_background_without_blocking_searches() -> None:
    rng = np.random.default_rng(9)
    d = 16
    x = clustered(rng, 4000, d)
    index = PartitionedIndex(d, metric="l2", split_limit=32, merge_limit=8, graph_min_partitions=50)
    index.add(np.arange(len(x)), x)
    assert index.wait_idle(timeout=60)
    assert index.stats()["centroid_graph"] and index.stats()["graph_builds"] >= 1
    s, ids = index.search(x[:5], 1, nprobe=4)
    np.testing.assert_array_equal(ids[:, 0], np.arange(5))
    index.close()
