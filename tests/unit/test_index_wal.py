"""The write-ahead log: framing, torn tails, rotation, LSN continuity, group commit, stamps."""

from __future__ import annotations

import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from veclink.index import create_index, open_index
from veclink.index.wal import OP_ADD, OP_REMOVE, WriteAheadLog, observe_fsyncs

from veclink.errors import FailedPrecondition


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


def test_every_segment_fsync_is_reported_to_the_observer(tmp_path: Path) -> None:
    seconds: list[float] = []
    observe_fsyncs(seconds.append)
    try:
        wal = WriteAheadLog(tmp_path)
        lsns = [wal.write(OP_ADD, np.array([i]), vecs(1, i)) for i in range(3)]
        wal.sync(lsns[-1])  # one group commit: one fsync
        assert len(seconds) == 1
        wal.append(OP_REMOVE, np.array([0]))
        wal.rotate(wal.last_lsn)
        wal.close()
    finally:
        observe_fsyncs(None)
    assert len(seconds) == 4  # sync, sync, rotate, close
    assert all(0 <= s < 60 for s in seconds)
    WriteAheadLog(tmp_path).close()  # no observer now: nothing more is reported
    assert len(seconds) == 4


@pytest.mark.parametrize("kind", ["flat", "partitioned"])
def test_index_reports_its_wal_size_and_pending_records(tmp_path: Path, kind: str) -> None:
    path = str(tmp_path / "idx")
    index = create_index(kind, 4, metric="ip", path=path)
    assert (index.wal_bytes, index.wal_records) == (0, 0)
    index.add(np.arange(3), vecs(3))
    index.remove(np.array([1]))
    on_disk = sum(p.stat().st_size for p in (tmp_path / "idx" / "wal").glob("wal-*.log"))
    assert index.wal_bytes == on_disk > 3 * 4 * 4 and index.wal_records == 2
    index.flush()  # the snapshot covers both: the WAL is empty again
    assert (index.wal_bytes, index.wal_records) == (0, 0)
    index.close()
    assert create_index("flat", 4).wal_bytes == 0  # in memory: no WAL at all


def test_stamps_round_trip_and_never_decrease(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.append(OP_ADD, np.array([1]), vecs(1), stamp=3)
    wal.append(OP_REMOVE, np.array([1]))  # no stamp: the last one
    with pytest.raises(ValueError, match="below"):
        wal.write(OP_ADD, np.array([2]), vecs(1), stamp=2)
    wal.close()
    wal = WriteAheadLog(tmp_path)
    assert [(r.lsn, r.stamp) for r in wal.replay(after=0)] == [(1, 3), (2, 3)]
    assert wal.last_stamp == 3
    wal.close()


def test_records_stamped_above_the_owners_commit_are_cut(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    for stamp in (1, 2, 2, 3, 4):
        wal.append(OP_ADD, np.array([stamp]), vecs(1, stamp), stamp=stamp)
    wal.close()
    wal = WriteAheadLog(tmp_path, max_stamp=2)  # the owner committed up to 2
    assert [r.stamp for r in wal.replay(after=0)] == [1, 2, 2]
    assert wal.last_stamp == 2 and wal.records == 3
    # numbering goes on after the last kept record: no snapshot can cover a cut one
    assert wal.append(OP_REMOVE, np.array([1]), stamp=3) == 4
    wal.close()
    assert [(r[0], r[1]) for r in records(tmp_path)] == [
        (1, OP_ADD),
        (2, OP_ADD),
        (3, OP_ADD),
        (4, OP_REMOVE),
    ]


def test_records_written_before_stamps_read_as_stamp_0(tmp_path: Path) -> None:
    # the record layout of earlier versions: no stamp flag, no stamp field
    ids, v = np.array([5], np.int64), vecs(1)
    body = struct.pack("<QBII", 1, OP_ADD, 1, 4) + ids.tobytes() + v.tobytes()
    (tmp_path / f"wal-{1:020d}.log").write_bytes(
        struct.pack("<II", len(body), zlib.crc32(body)) + body
    )
    wal = WriteAheadLog(tmp_path, max_stamp=0)
    (got,) = list(wal.replay(after=0))
    assert (got.lsn, got.op, got.stamp, got.ids.tolist()) == (1, OP_ADD, 0, [5])
    np.testing.assert_array_equal(got.vectors, v)
    wal.close()


@pytest.mark.parametrize("kind", ["flat", "partitioned"])
def test_open_rolls_back_to_the_committed_stamp(tmp_path: Path, kind: str) -> None:
    path = str(tmp_path / "idx")
    index = create_index(kind, 4, metric="ip", path=path)
    index.add(np.arange(3), vecs(3), stamp=1)
    index.flush()  # snapshot at stamp 1
    index.add(np.array([1]), np.full((1, 4), 9, np.float32), stamp=2)
    index.remove(np.array([0]), stamp=3)
    index.add(np.array([7]), vecs(1, 7), stamp=3)
    index.abandon()  # as a kill would leave it
    again = open_index(path, committed=2)
    assert sorted(again.ids().tolist()) == [0, 1, 2]
    np.testing.assert_array_equal(again.get(np.array([1]))[0], np.full(4, 9, np.float32))
    again.abandon()
    again = open_index(path, committed=1)  # the records of stamp 2 are gone for good
    np.testing.assert_array_equal(again.get(np.array([1]))[0], vecs(3)[1])
    again.close()
    with pytest.raises(FailedPrecondition, match="cannot be rolled back"):
        open_index(path, committed=0)  # the snapshot holds stamp 1
