"""PartitionedIndex durability while the rebalancing worker is busy: kill -9, reopen, check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from veclink.index import PartitionedIndex, open_index

# small postings and drifting data keep the worker splitting, reassigning and merging
WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from veclink.index import PartitionedIndex
    index = PartitionedIndex(
        16, metric="l2", path=sys.argv[1], split_limit=24, merge_limit=4, nprobe=4
    )
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16)) * 3
    for batch in range(100_000):
        ids = np.arange(batch * 50, batch * 50 + 50)
        x = centres[batch % 40] + rng.normal(size=(50, 16))
        index.add(ids, x.astype(np.float32))
        print(f"added {batch}", flush=True)
        if batch >= 2:
            gone = np.arange((batch - 2) * 50, (batch - 2) * 50 + 40)
            index.remove(gone)
            print(f"removed {batch - 2}", flush=True)
        if batch % 7 == 6:
            index.flush()  # snapshots taken with rebalancing in flight
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.4, 1.3])
def test_sigkill_during_rebalancing(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "idx"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("added"), first
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    lines = [first, *out.splitlines()]
    added = [int(x.split()[1]) for x in lines if x.startswith("added")]
    removed = {int(x.split()[1]) for x in lines if x.startswith("removed")}
    assert len(added) >= 3

    index = open_index(str(path))
    assert isinstance(index, PartitionedIndex)
    live = set(index.ids().tolist())
    deleted: set[int] = set()
    for b in added:
        kept = set(range(b * 50 + 40, b * 50 + 50))
        assert kept <= live, f"acknowledged batch {b} lost"
        if b in removed:
            gone = set(range(b * 50, b * 50 + 40))
            assert not gone & live
            deleted |= gone
    assert index.wait_idle(timeout=30)
    st = index.stats()
    assert st["over_split_limit"] == 0 and st["pending"] == 0
    # every live id is findable by its own vector; no deleted id is ever returned
    ids = np.array(sorted(live), dtype=np.int64)
    _, got = index.search(index.get(ids), 5, nprobe=10_000)
    assert (got[:, 0] == ids).mean() >= 0.99
    assert not np.isin(got, list(deleted)).any()
    # replay is idempotent: reopening again gives the same live set
    index.close()
    again = open_index(str(path))
    assert set(again.ids().tolist()) == live
    again.close()
