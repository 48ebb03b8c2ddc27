"""The write-ahead log: framing, torn tails, rotation, LSN continuity, group commit."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from veclink.index.wal import OP_ADD, OP_REMOVE, WriteAheadLog


def vecs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)


def records(path: Path, after: int = 0) -> list[tuple[int, int, list[int]]]:
    wal = WriteAheadLog(path)
    out = [(r.lsn, r.op, r.ids.tolist()) for r in wal.replay(after=after)]
    wal.close()
    return out


def test_round_trip_and_monotonic_lsns(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    v = vecs(3)
    assert wal.append(OP_ADD, np.array([1, 2, 3]), v) == 1
    assert wal.append(OP_REMOVE, np.array([2])) == 2
    got = list(wal.replay(after=0))
    wal.close()
    assert [(r.lsn, r.op) for r in got] == [(1, OP_ADD), (2, OP_REMOVE)]
    np.testing.assert_array_equal(got[0].vectors, v)
    assert got[1].vectors is None and got[1].ids.tolist() == [2]
    assert records(tmp_path, after=1) == [(2, OP_REMOVE, [2])]


def test_torn_and_corrupt_tails_are_truncated(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    for i in range(3):
        wal.append(OP_ADD, np.array([i]), vecs(1, i))
    wal.close()
    (seg,) = tmp_path.glob("wal-*.log")
    size = seg.stat().st_size
    with open(seg, "ab") as f:  # a record cut short by a crash
        f.write(b"\x40\x00\x00\x00\x01\x02")
    assert [r[0] for r in records(tmp_path)] == [1, 2, 3]
    assert seg.stat().st_size == size  # the torn bytes are gone
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF  # flip a bit in the last record's body: its CRC no longer matches
    seg.write_bytes(bytes(data))
    wal = WriteAheadLog(tmp_path)
    assert wal.last_lsn == 2
    assert wal.append(OP_REMOVE, np.array([0])) == 3  # appends continue after the cut
    wal.close()
    assert [r[:2] for r in records(tmp_path)] == [(1, OP_ADD), (2, OP_ADD), (3, OP_REMOVE)]


def test_rotation_deletes_covered_segments_and_lsns_never_go_back(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    for i in range(5):
        wal.append(OP_ADD, np.array([i]), vecs(1, i))
    wal.rotate(covered_lsn=5)
    segs = sorted(p.name for p in tmp_path.glob("wal-*.log"))
    assert segs == [f"wal-{6:020d}.log"]  # the covered segment is deleted
    wal.close()
    # reopened with nothing left on disk but an empty segment: numbering goes on from 6,
    # so a record written now is never mistaken for one the snapshot covers
    wal = WriteAheadLog(tmp_path, start_lsn=5)
    assert wal.append(OP_REMOVE, np.array([1])) == 6
    wal.close()
    wal = WriteAheadLog(tmp_path)  # even without start_lsn, the segment name bounds it
    assert wal.last_lsn == 6
    assert [r.lsn for r in wal.replay(after=5)] == [6]
    wal.close()


def test_rotation_keeps_records_a_snapshot_does_not_cover(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    for i in range(4):
        wal.append(OP_ADD, np.array([i]), vecs(1, i))
    wal.rotate(covered_lsn=2)  # records 3 and 4 are in the old segment and still needed
    wal.append(OP_ADD, np.array([9]), vecs(1, 9))
    wal.close()
    assert [r[0] for r in records(tmp_path, after=2)] == [3, 4, 5]


def test_concurrent_writers_share_fsyncs(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    lock = threading.Lock()  # an index lock: records are ordered under it, synced outside

    def writer(t: int) -> None:
        for i in range(25):
            with lock:
                lsn = wal.write(OP_ADD, np.array([t * 100 + i]), vecs(1, i))
            wal.sync(lsn)
            assert wal.durable_lsn >= lsn

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert wal.last_lsn == 200 and wal.durable_lsn == 200
    wal.close()
    got = records(tmp_path)
    assert [r[0] for r in got] == list(range(1, 201))
    assert sorted(i for r in got for i in r[2]) == sorted(
        t * 100 + i for t in range(8) for i in range(25)
    )


def test_one_fsync_covers_every_record_written_before_it(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    lsns = [wal.write(OP_ADD, np.array([i]), vecs(1, i)) for i in range(3)]
    assert wal.durable_lsn == 0
    wal.sync(lsns[-1])
    assert wal.syncs == 1 and wal.durable_lsn == 3
    wal.sync(lsns[0])  # already covered by the group's fsync: no second one
    assert wal.syncs == 1
    wal.close()
