"""Write-ahead log of index mutations.

A log is a directory of segment files ``wal-<first lsn>.log``. Each record is::

    u32 length of body | u32 crc32 of body | body
    body = u64 lsn | u8 op | u32 n | u32 dim | int64 ids[n] | float32 vectors[n * dim]

``append`` returns once the record is on disk (fsync). Concurrent appenders share one
fsync (group commit): whoever takes the sync lock flushes everything written so far.
Reading stops at the first torn or corrupt record and truncates the tail, which can only
be a write that was never acknowledged.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OP_ADD = 1
OP_REMOVE = 2
_HEAD = struct.Struct("<II")
_BODY = struct.Struct("<QBII")


@dataclass(frozen=True)
class WalRecord:
    lsn: int
    op: int
    ids: np.ndarray
    vectors: np.ndarray | None


def _segments(path: Path) -> list[tuple[int, Path]]:
    out = []
    for p in path.glob("wal-*.log"):
        try:
            out.append((int(p.stem[4:]), p))
        except ValueError:
            continue
    return sorted(out)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteAheadLog:
    """Append-only, checksummed, fsynced log with rotation after snapshots."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        # find the last valid lsn, truncating any torn tail
        self.last_lsn = 0
        for record in self.replay(after=-1):
            self.last_lsn = record.lsn
        segs = _segments(self.path)
        if segs:
            self._file = open(segs[-1][1], "ab")  # noqa: SIM115
        else:
            self._file = self._new_segment(self.last_lsn + 1)
        self._durable_lsn = self.last_lsn

    def _new_segment(self, first_lsn: int):  # type: ignore[no-untyped-def]
        f = open(self.path / f"wal-{first_lsn:020d}.log", "ab")  # noqa: SIM115
        fsync_dir(self.path)
        return f

    def append(self, op: int, ids: np.ndarray, vectors: np.ndarray | None = None) -> int:
        """Write one record durably; returns its LSN."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        dim = 0 if vectors is None else int(vectors.shape[1])
        with self._write_lock:
            lsn = self.last_lsn + 1
            body = _BODY.pack(lsn, op, ids.size, dim) + ids.tobytes()
            if vectors is not None:
                body += np.ascontiguousarray(vectors, dtype=np.float32).tobytes()
            self._file.write(_HEAD.pack(len(body), zlib.crc32(body)) + body)
            self.last_lsn = lsn
        with self._sync_lock:
            if self._durable_lsn < lsn:  # nobody has synced past us yet: sync the group
                with self._write_lock:
                    self._file.flush()
                    high = self.last_lsn
                os.fsync(self._file.fileno())
                self._durable_lsn = high
        return lsn

    def replay(self, after: int) -> Iterator[WalRecord]:
        """Yield records with lsn > ``after`` in order; truncates a torn tail."""
        segs = _segments(self.path)
        for n, (_, seg) in enumerate(segs):
            data = seg.read_bytes()
            pos = 0
            while pos < len(data):
                record, end = _decode(data, pos)
                if record is None:
                    # torn tail: only possible in the last segment, after the last ack
                    with open(seg, "r+b") as f:
                        f.truncate(pos)
                        f.flush()
                        os.fsync(f.fileno())
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
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = self._new_segment(self.last_lsn + 1)
            self._durable_lsn = self.last_lsn
            segs = _segments(self.path)
            # a segment is obsolete when the next one starts at or before covered_lsn + 1
            for (_, seg), (next_first, _) in zip(segs, segs[1:], strict=False):
                if next_first <= covered_lsn + 1:
                    seg.unlink()
            fsync_dir(self.path)

    def close(self) -> None:
        with self._sync_lock, self._write_lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()


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
    ids = np.frombuffer(body, dtype=np.int64, count=n, offset=off).copy()
    off += 8 * n
    vectors = None
    if op == OP_ADD:
        vectors = (
            np.frombuffer(body, dtype=np.float32, count=n * dim, offset=off).reshape(n, dim).copy()
        )
    return WalRecord(lsn, op, ids, vectors), start + length
