"""Write-ahead log of index mutations.

A log is a directory of segment files ``wal-<first lsn>.log``. Each record is::

    u32 length of body | u32 crc32 of body | body
    body = u64 lsn | u8 op | u32 n | u32 dim | [u64 stamp] | int64 ids[n] | float32 vectors[n * dim]

``stamp`` is the owner's commit number (present when bit 0x80 of ``op`` is set; logs written
before stamps existed have none, which reads as 0). Stamps never decrease along the log.
An owner that commits elsewhere after the WAL (the service's catalog) opens the log with
``max_stamp`` = its last commit: the first record stamped above it, and everything after
it, was never acknowledged and is cut off, exactly like a torn tail.

``append`` returns once the record is on disk (fsync). It is ``write`` (assign the LSN,
buffer the record) followed by ``sync`` (wait until it is on disk); callers that must order
records under their own lock call ``write`` inside it and ``sync`` after releasing it, so
that concurrent writers share one fsync (group commit): whoever takes the sync lock flushes
everything written so far, and the others find their record already durable.
Reading stops at the first torn or corrupt record and truncates the tail, which can only
be a write that was never acknowledged.

LSNs never go back, even when rotation has left no record on disk: a segment's name holds
its first LSN, and the owner passes the LSN its snapshot covers (``start_lsn``).
(Records cut for their stamp give their LSNs back: no snapshot can cover them.)

Every fsync of a segment is timed and reported to the observer set with `observe_fsyncs`
(the service's metrics set one; the index layer itself knows nothing of Prometheus).
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OP_ADD = 1
OP_REMOVE = 2
_STAMPED = 0x80
_HEAD = struct.Struct("<II")
_BODY = struct.Struct("<QBII")
_STAMP = struct.Struct("<Q")


@dataclass(frozen=True)
class WalRecord:
    lsn: int
    op: int
    ids: np.ndarray
    vectors: np.ndarray | None
    #: the owner's commit number the record belongs to (0: unstamped)
    stamp: int = 0


def _segments(path: Path) -> list[tuple[int, Path]]:
    out = []
    for p in path.glob("wal-*.log"):
        try:
            out.append((int(p.stem[4:]), p))
        except ValueError:
            continue
    return sorted(out)


#: called with the seconds each fsync of a segment took; None: not observed
_fsync_observer: Callable[[float], None] | None = None


def observe_fsyncs(observer: Callable[[float], None] | None) -> None:
    """Report the duration of every WAL segment fsync, process-wide, to ``observer``.

    ``observer`` runs on the writing thread right after the fsync, so it must be cheap and
    must not raise (a Prometheus histogram's ``observe``); None stops the reports.
    """
    global _fsync_observer
    _fsync_observer = observer


def _fsync(fd: int) -> None:
    began = time.perf_counter()
    os.fsync(fd)
    observer = _fsync_observer
    if observer is not None:
        observer(time.perf_counter() - began)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteAheadLog:
    """Append-only, checksummed, fsynced log with rotation after snapshots."""

    def __init__(
        self,
        path: str | Path,
        start_lsn: int = 0,
        start_stamp: int = 0,
        max_stamp: int | None = None,
    ) -> None:
        """Open (or create) the log in directory ``path``.

        Args:
            path: the log's directory.
            start_lsn: the highest LSN already covered elsewhere (the owner's snapshot);
                new records are numbered above it even if no segment holds a record.
            start_stamp: the highest stamp already covered elsewhere (the owner's snapshot).
            max_stamp: the owner's last commit; records stamped above it are cut off.
                None keeps every record.
        """
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        # find the last valid lsn, truncating any torn tail. After a rotation the newest
        # segment may be empty: its name (first lsn) still says where numbering stands, and
        # a snapshot's lsn bounds it too, so records written now are never <= a snapshot's.
        self.last_lsn = max(start_lsn, 0)
        self.last_stamp = max(start_stamp, 0)
        #: records a reopen would replay, and the bytes of the segments on disk
        self.records = 0
        self.size_bytes = 0
        for record in self._scan(after=-1, max_stamp=max_stamp):
            self.last_lsn = max(self.last_lsn, record.lsn)
            self.last_stamp = max(self.last_stamp, record.stamp)
            self.records += record.lsn > start_lsn
        segs = _segments(self.path)
        self.size_bytes = sum(seg.stat().st_size for _, seg in segs)
        if segs:
            self.last_lsn = max(self.last_lsn, segs[-1][0] - 1)
            self._file = open(segs[-1][1], "ab")  # noqa: SIM115
        else:
            self._file = self._new_segment(self.last_lsn + 1)
        self._durable_lsn = self.last_lsn
        #: fsyncs done by ``sync`` (fewer than records when writers share them)
        self.syncs = 0

    def _new_segment(self, first_lsn: int):  # type: ignore[no-untyped-def]
        f = open(self.path / f"wal-{first_lsn:020d}.log", "ab")  # noqa: SIM115
        fsync_dir(self.path)
        return f

    def append(
        self,
        op: int,
        ids: np.ndarray,
        vectors: np.ndarray | None = None,
        stamp: int | None = None,
    ) -> int:
        """Write one record durably; returns its LSN."""
        lsn = self.write(op, ids, vectors, stamp)
        self.sync(lsn)
        return lsn

    def write(
        self,
        op: int,
        ids: np.ndarray,
        vectors: np.ndarray | None = None,
        stamp: int | None = None,
    ) -> int:
        """Buffer one record and return its LSN; it is durable only after ``sync(lsn)``.

        ``stamp`` (default: the last one written) must not be below the last one written.
        """
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        dim = 0 if vectors is None else int(vectors.shape[1])
        payload = ids.tobytes()
        if vectors is not None:
            payload += np.ascontiguousarray(vectors, dtype=np.float32).tobytes()
        with self._write_lock:
            if self._file.closed:
                raise ValueError("the write-ahead log is closed")
            stamp = self.last_stamp if stamp is None else int(stamp)
            if stamp < self.last_stamp:
                raise ValueError(f"WAL stamp {stamp} is below the last one, {self.last_stamp}")
            lsn = self.last_lsn + 1
            body = _BODY.pack(lsn, op | _STAMPED, ids.size, dim) + _STAMP.pack(stamp) + payload
            record = _HEAD.pack(len(body), zlib.crc32(body)) + body
            self._file.write(record)
            self.last_lsn = lsn
            self.last_stamp = stamp
            self.records += 1
            self.size_bytes += len(record)
        return lsn

    def sync(self, lsn: int) -> None:
        """Return once every record up to ``lsn`` is on disk (one fsync per group)."""
        if self._durable_lsn >= lsn:
            return
        with self._sync_lock:
            if self._durable_lsn >= lsn:  # another writer's fsync covered us
                return
            with self._write_lock:
                self._file.flush()
                high = self.last_lsn
            # writers keep appending to the buffer while the disk syncs
            _fsync(self._file.fileno())
            self._durable_lsn = high
            self.syncs += 1

    @property
    def durable_lsn(self) -> int:
        return self._durable_lsn

    def replay(self, after: int) -> Iterator[WalRecord]:
        """Yield records with lsn > ``after`` in order; truncates a torn tail."""
        return self._scan(after, None)

    def _scan(self, after: int, max_stamp: int | None) -> Iterator[WalRecord]:
        segs = _segments(self.path)
        for n, (_, seg) in enumerate(segs):
            data = seg.read_bytes()
            pos = 0
            while pos < len(data):
                record, end = _decode(data, pos)
                if record is None or (max_stamp is not None and record.stamp > max_stamp):
                    # torn tail (only possible in the last segment, after the last ack), or
                    # the first record of a write its owner never committed: cut both off
                    with open(seg, "r+b") as f:
                        f.truncate(pos)
                        f.flush()
                        _fsync(f.fileno())
                    for _, later in segs[n + 1 :]:
                        later.unlink()
                    return
                pos = end
                if record.lsn > after:
                    yield record

    def rotate(self, covered_lsn: int) -> None:
        """Start a new segment and delete the segments a snapshot at ``covered_lsn`` covers."""
        with self._sync_lock, self._write_lock:
            self._file.flush()
            _fsync(self._file.fileno())
            self._file.close()
            self._file = self._new_segment(self.last_lsn + 1)
            self._durable_lsn = self.last_lsn
            segs = _segments(self.path)
            # a segment is obsolete when the next one starts at or before covered_lsn + 1
            for (_, seg), (next_first, _) in zip(segs, segs[1:], strict=False):
                if next_first <= covered_lsn + 1:
                    seg.unlink()
            fsync_dir(self.path)
            kept = _segments(self.path)
            self.size_bytes = sum(seg.stat().st_size for _, seg in kept)
            self.records = max(self.last_lsn - covered_lsn, 0)

    def close(self) -> None:
        with self._sync_lock, self._write_lock:
            if not self._file.closed:
                self._file.flush()
                _fsync(self._file.fileno())
                self._file.close()
                self._durable_lsn = self.last_lsn


def _decode(data: bytes, pos: int) -> tuple[WalRecord | None, int]:
    if pos + _HEAD.size > len(data):
        return None, pos
    length, crc = _HEAD.unpack_from(data, pos)
    start = pos + _HEAD.size
    body = data[start : start + length]
    if len(body) < length or length < _BODY.size or zlib.crc32(body) != crc:
        return None, pos
    lsn, op, n, dim = _BODY.unpack_from(body)
    off = _BODY.size
    stamp = 0
    if op & _STAMPED:
        op &= ~_STAMPED
        (stamp,) = _STAMP.unpack_from(body, off)
        off += _STAMP.size
    ids = np.frombuffer(body, dtype=np.int64, count=n, offset=off).copy()
    off += 8 * n
    vectors = None
    if op == OP_ADD:
        vectors = (
            np.frombuffer(body, dtype=np.float32, count=n * dim, offset=off).reshape(n, dim).copy()
        )
    return WalRecord(lsn, op, ids, vectors, stamp), start + length
