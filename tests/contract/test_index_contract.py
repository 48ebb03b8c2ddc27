"""The contract every VectorIndex kind must pass (parametrised over the registry).

Kinds that search approximately are asked for exhaustive search through EXACT_PARAMS.
Storage options that change how a kind holds its vectors run the contract too, as
``kind:variant`` (VARIANTS); quantised postings re-rank enough candidates to be exact here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from veclink.index import INDEX_KINDS, VectorIndex, create_index, open_index

from veclink.errors import InvalidArgument, NotFound

#: search parameters that make each kind exhaustive (exact) for the comparisons below
EXACT_PARAMS: dict[str, dict[str, object]] = {"flat": {}, "partitioned": {"nprobe": 10_000}}
#: storage variants of a kind that must keep the contract: "kind:variant" -> options
VARIANTS: dict[str, dict[str, object]] = {
    "partitioned:fp16": {"postings": "fp16", "rerank": 1024},
    "partitioned:int8": {"postings": "int8", "rerank": 1024},
}
KINDS = sorted([*INDEX_KINDS, *VARIANTS])
DIM = 16
#: the lines a writer subprocess uses to build ``kind`` (a name or a variant) from argv
MAKE_IN_SCRIPT = "import json; kind, options = sys.argv[1].split(':')[0], json.loads(sys.argv[3])"


def make(name: str, dim: int, **kwargs: object) -> VectorIndex:
    """An empty index of a kind or a ``kind:variant`` (VARIANTS)."""
    return create_index(name.partition(":")[0], dim, **kwargs, **VARIANTS.get(name, {}))


def options_json(name: str) -> str:
    """A writer script's third argument: the variant's options as JSON (MAKE_IN_SCRIPT)."""
    return json.dumps(VARIANTS.get(name, {}))


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def data(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def brute(vectors: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int, metric: str) -> np.ndarray:
    if metric == "cosine":
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        scores = -((q[:, None, :] - vectors[None]) ** 2).sum(-1)
    else:
        scores = q @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[order]


def search(index: VectorIndex, kind: str, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return index.search(q, k, **EXACT_PARAMS.get(kind.partition(":")[0], {}))


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_search_is_exact(kind: str, metric: str) -> None:
    index = make(kind, DIM, metric=metric)
    vecs, ids = data(500), np.arange(1000, 1500, dtype=np.int64)
    index.add(ids, vecs)
    q = data(20, seed=1)
    scores, got = search(index, kind, q, 10)
    assert scores.shape == got.shape == (20, 10)
    assert scores.dtype == np.float32 and got.dtype == np.int64
    want = brute(vecs, ids, q, 10, metric)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want, strict=True)])
    assert recall >= 0.99
    assert (np.diff(scores, axis=1) <= 1e-5).all(), "scores must be best first"
    assert len(index) == 500


def test_upsert_replaces(kind: str) -> None:
    index = make(kind, DIM)
    vecs = data(100)
    index.add(np.arange(100), vecs)
    index.add(np.array([7]), -vecs[7:8])
    assert len(index) == 100
    _, got = search(index, kind, vecs[7:8], 1)
    assert got[0, 0] != 7
    _, got = search(index, kind, -vecs[7:8], 1)
    assert got[0, 0] == 7
    np.testing.assert_allclose(index.get(np.array([7])), -vecs[7:8], rtol=1e-6)


def test_removed_ids_never_return(kind: str) -> None:
    index = make(kind, DIM)
    vecs = data(300)
    index.add(np.arange(300), vecs)
    gone = np.arange(0, 300, 3)
    assert index.remove(gone) == gone.size
    assert index.remove(gone) == 0
    assert index.remove(np.array([9999])) == 0
    assert len(index) == 200
    _, got = search(index, kind, vecs, 50)
    assert not np.isin(got, gone).any()
    assert set(index.ids().tolist()) == set(range(300)) - set(gone.tolist())
    with pytest.raises(NotFound):
        index.get(np.array([0]))


def test_any_non_negative_int64_is_an_id(kind: str, tmp_path: Path) -> None:
    # ids are the caller's: sparse, huge and out of order, not array positions
    ids = np.array([2**62 + 5, 7, 2**40, 2**33 + 1, 0, 2**63 - 1], dtype=np.int64)
    vecs = data(ids.size, seed=8)
    path = str(tmp_path / "idx")
    index = make(kind, DIM, path=path)
    index.add(ids, vecs)
    _, got = search(index, kind, vecs, 1)
    np.testing.assert_array_equal(got[:, 0], ids)
    assert index.remove(ids[:2]) == 2
    assert sorted(index.ids().tolist()) == sorted(ids[2:].tolist())
    np.testing.assert_allclose(index.get(ids[2:]), vecs[2:], rtol=1e-6)
    index.add(ids[:1], vecs[:1])  # re-added after a delete
    index.close()
    again = open_index(path)
    assert sorted(again.ids().tolist()) == sorted([ids[0], *ids[2:].tolist()])
    _, got = search(again, kind, vecs, 1)
    assert got[0, 0] == ids[0] and got[1, 0] != ids[1]
    again.close()


def test_padding_and_empty(kind: str) -> None:
    index = make(kind, DIM)
    scores, got = index.search(data(2), 5)
    assert (got == -1).all() and np.isneginf(scores).all()
    index.add(np.array([1, 2, 3]), data(3))
    scores, got = search(index, kind, data(2, seed=5), 5)
    assert (got[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert set(got[0, :3].tolist()) == {1, 2, 3}


def test_bad_input_leaves_data_untouched(kind: str) -> None:
    index = make(kind, DIM)
    index.add(np.arange(10), data(10))
    before = index.ids().copy()
    with pytest.raises(InvalidArgument) as info:
        index.add(np.array([20, 21]), data(2, dim=DIM + 1))
    assert info.value.field == "vectors"
    bad = data(2)
    bad[1, 3] = np.nan
    with pytest.raises(InvalidArgument, match="NaN"):
        index.add(np.array([20, 21]), bad)
    with pytest.raises(InvalidArgument, match="distinct"):
        index.add(np.array([20, 20]), data(2))
    with pytest.raises(InvalidArgument, match="rows"):
        index.add(np.array([20, 21, 22]), data(2))
    with pytest.raises(InvalidArgument, match=">= 0"):
        index.add(np.array([-1]), data(1))
    with pytest.raises(InvalidArgument, match="dimension"):
        index.search(data(1, dim=DIM - 1), 3)
    with pytest.raises(InvalidArgument, match="k must"):
        index.search(data(1), 0)
    assert sorted(index.ids().tolist()) == sorted(before.tolist())


def test_persistence_round_trip(kind: str, tmp_path: Path) -> None:
    path = str(tmp_path / "idx")
    index = make(kind, DIM, metric="cosine", path=path)
    vecs = data(400)
    index.add(np.arange(400), vecs)
    index.remove(np.arange(50))
    index.flush()
    index.add(np.arange(400, 450), data(50, seed=3))  # after the snapshot: WAL only
    index.remove(np.array([60, 61]))
    q = data(10, seed=4)
    before = search(index, kind, q, 10)
    index.close()
    again = open_index(path)
    assert type(again) is type(index) and again.metric == "cosine" and again.dim == DIM
    assert len(again) == 398
    after = search(again, kind, q, 10)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0], rtol=1e-5)
    again.close()
    with pytest.raises(InvalidArgument):
        make(kind, DIM, path=path)  # never overwrite an existing index


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from veclink.index import create_index
    from veclink.index import create_index, open_index
    path = sys.argv[2]
    MAKE
    index = create_index(kind, 8, metric="ip", path=path, **options)
    rng = np.random.default_rng(0)
    for batch in range(10_000):
        ids = np.arange(batch * 20, batch * 20 + 20)
        index.add(ids, rng.normal(size=(20, 8)).astype(np.float32))
        if batch % 3 == 2:
            index.remove(ids[:5])
            print(f"removed {batch}", flush=True)
        print(f"added {batch}", flush=True)
        if batch % 25 == 24:
            index.flush()
        if batch % 10 == 9:  # reopened indexes must keep their WAL numbering going
            index.close()
            index = open_index(path)
    """
).replace("MAKE", MAKE_IN_SCRIPT)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.9, 1.7])
def test_sigkill_loses_no_acknowledged_write(kind: str, tmp_path: Path, delay: float) -> None:
    path = tmp_path / "idx"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, kind, str(path), options_json(kind)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    # wait until the writer has acknowledged something, then kill it mid-stream
    first = proc.stdout.readline()
    assert first.startswith("added"), first
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    lines = [first, *out.splitlines()]
    added = [int(x.split()[1]) for x in lines if x.startswith("added")]
    removed = {int(x.split()[1]) for x in lines if x.startswith("removed")}
    index = open_index(str(path))
    live = set(index.ids().tolist())
    for batch in added:
        ids = set(range(batch * 20, batch * 20 + 20))
        if batch in removed:
            assert not (set(range(batch * 20, batch * 20 + 5)) & live)
            assert set(range(batch * 20 + 5, batch * 20 + 20)) <= live
        else:
            assert ids <= live, f"acknowledged batch {batch} lost"
    _, got = search(index, kind, np.ones((1, 8), np.float32), 100)
    deleted = {i for b in removed for i in range(b * 20, b * 20 + 5)}
    assert not (set(got[0].tolist()) & deleted)
    index.close()


CRASH_AFTER_REOPEN = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from veclink.index import create_index, open_index
    path = sys.argv[2]
    MAKE
    rng = np.random.default_rng(0)
    index = create_index(kind, 8, path=path, **options)
    index.add(np.arange(100), rng.normal(size=(100, 8)).astype(np.float32))
    index.close()  # snapshot; the WAL is rotated down to one empty segment
    index = open_index(path)
    index.add(np.arange(100, 130), rng.normal(size=(130 - 100, 8)).astype(np.float32))
    index.remove(np.arange(10))
    print("acknowledged", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
).replace("MAKE", MAKE_IN_SCRIPT)


def test_writes_after_a_reopen_survive_a_crash(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "idx"
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_REOPEN, kind, str(path), options_json(kind)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL and "acknowledged" in proc.stdout, proc.stderr
    index = open_index(str(path))
    assert set(index.ids().tolist()) == set(range(10, 130))
    index.close()
