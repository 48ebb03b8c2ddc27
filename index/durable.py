"""`WalIndex`: what every index persisted as snapshot + write-ahead log shares.

An index opened with a ``path`` keeps there ``meta.json`` (kind, dimension, metric, options,
and the WAL position and stamp its snapshot covers), a snapshot file, and ``wal/``. A mutation
is written to the WAL and applied under the index lock (so WAL order is apply order), and
fsynced after the lock is released, so that concurrent writers share one fsync (group
commit). Opening loads the snapshot and replays the WAL after it; replay is idempotent (add
is an upsert, removing a missing id is a no-op).

Stamps tie the index to a commit made elsewhere. A caller that commits somewhere else after
the index write (the service's SQL catalog) passes its commit number as ``stamp`` and
reopens with ``open(path, committed=N)``: every mutation stamped above ``N`` was never
acknowledged, so it is cut from the WAL before replay, and the index comes back exactly as
it was at commit ``N``. The caller must then only ``flush`` (snapshot) while none of its
writes is between the index write and its commit; a snapshot stamped above ``committed``
cannot be rolled back, and ``open`` refuses it rather than serve it.

Subclasses implement the in-memory part: ``_init_state``, ``_apply_add``, ``_apply_remove``,
``_snapshot_bytes``, ``_load_snapshot`` and the hooks ``_options``/``_restore_options``,
``_start_background``/``_stop_background`` and ``_after_replay``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from veclink.index.base import VectorIndex, check_ids, check_metric, check_vectors, normalize_rows
from veclink.index.locks import SharedLock
from veclink.index.wal import OP_ADD, OP_REMOVE, WriteAheadLog, fsync_dir

from veclink.errors import FailedPrecondition, InvalidArgument, NotFound

META = "meta.json"


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a mix."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckpointPolicy:
    """When a snapshot should replace the WAL (any one reached; 0 turns a criterion off)."""

    #: WAL records (write calls) since the last snapshot
    records: int = 10_000
    #: bytes of WAL on disk
    wal_bytes: int = 64 * 1024 * 1024
    #: seconds since the last snapshot, once the WAL holds anything
    seconds: float = 300.0


class WalIndex(VectorIndex):
    """A `VectorIndex` made durable by a write-ahead log and atomic snapshots."""

    #: file name of the snapshot inside the index directory
    snapshot_name: ClassVar[str]

    lock: SharedLock
    path: Path | None

    def __init__(self, dim: int, metric: str = "ip", path: str | None = None) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise InvalidArgument(f"dim must be a positive integer; got {dim!r}", field="dim")
        self._setup(dim, check_metric(metric), Path(path) if path else None)
        self._init_state()
        if self.path is not None:
            if (self.path / META).exists():
                raise InvalidArgument(f"an index already exists at {self.path}", field="path")
            self.path.mkdir(parents=True, exist_ok=True)
            self._wal = WriteAheadLog(self.path / "wal")
            self._write_meta(0, 0)
        self._start_background()

    def _setup(self, dim: int, metric: str, path: Path | None) -> None:
        self.dim = dim
        self.metric = metric
        self.path = path
        self.lock = SharedLock()
        self._wal: WriteAheadLog | None = None
        self._closed = False
        self._snapshot_time = time.monotonic()

    # ------------------------------------------------------------------ subclass parts

    @abstractmethod
    def _init_state(self) -> None:
        """Create the empty in-memory state."""

    @abstractmethod
    def _apply_add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Upsert checked (and, for cosine, normalised) vectors in memory."""

    @abstractmethod
    def _apply_remove(self, ids: np.ndarray) -> int:
        """Remove ids in memory; returns how many were present."""

    @abstractmethod
    def _snapshot_bytes(self) -> bytes:
        """Serialise the in-memory state (called under the lock)."""

    @abstractmethod
    def _load_snapshot(self, data: bytes) -> None:
        """Restore the in-memory state from ``_snapshot_bytes`` output."""

    def _options(self) -> dict[str, Any]:
        """Options persisted in the metadata."""
        return {}

    def _restore_options(self, options: dict[str, Any]) -> None:
        """Take the persisted options back (before ``_init_state``)."""

    def _start_background(self) -> None:
        """Start background workers (after the state exists, before replay)."""

    def _stop_background(self) -> None:
        """Stop background workers (before the final snapshot)."""

    def _after_replay(self) -> None:
        """Called under the lock once the WAL has been replayed."""

    # ------------------------------------------------------------------ mutations

    def add(self, ids: np.ndarray, vectors: np.ndarray, *, stamp: int | None = None) -> None:
        """Insert or replace vectors; durable on return. ``stamp``: see the module notes."""
        ids = check_ids(ids)
        vectors = check_vectors(vectors, self.dim, ids.size)
        if self.metric == "cosine":
            vectors = normalize_rows(vectors)
        if not ids.size:
            return
        with self.lock:
            self._check_open()
            lsn = self._wal.write(OP_ADD, ids, vectors, stamp) if self._wal is not None else 0
            self._apply_add(ids, vectors)
        if self._wal is not None:
            self._wal.sync(lsn)

    def remove(self, ids: np.ndarray, *, stamp: int | None = None) -> int:
        """Delete ids; returns how many were present; durable on return."""
        ids = check_ids(ids)
        with self.lock:
            self._check_open()
            wal = self._wal if ids.size else None
            lsn = wal.write(OP_REMOVE, ids, None, stamp) if wal is not None else 0
            removed = self._apply_remove(ids)
        if wal is not None:
            wal.sync(lsn)
        return removed

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition("the index is closed")

    # ------------------------------------------------------------------ persistence

    def _write_meta(self, lsn: int, stamp: int) -> None:
        assert self.path is not None
        meta = {
            "kind": self.kind,
            "dim": self.dim,
            "metric": self.metric,
            "snapshot_lsn": lsn,
            "snapshot_stamp": stamp,
        }
        options = self._options()
        if options:
            meta["options"] = options
        write_atomic(self.path / META, json.dumps(meta).encode())

    def flush(self) -> None:
        """Snapshot the index and drop the WAL the snapshot covers."""
        if self.path is None or self._wal is None:
            return
        with self.lock:
            self._check_open()
            lsn, stamp = self._wal.last_lsn, self._wal.last_stamp
            write_atomic(self.path / self.snapshot_name, self._snapshot_bytes())
            self._write_meta(lsn, stamp)
            self._wal.rotate(lsn)
            self._snapshot_time = time.monotonic()

    def checkpoint_due(self, policy: CheckpointPolicy) -> bool:
        """Whether the WAL has grown (in records, bytes or age) past ``policy``."""
        wal = self._wal
        if wal is None or self._closed or wal.records == 0:
            return False
        return bool(
            (policy.records and wal.records >= policy.records)
            or (policy.wal_bytes and wal.size_bytes >= policy.wal_bytes)
            or (policy.seconds and time.monotonic() - self._snapshot_time >= policy.seconds)
        )

    def close(self) -> None:
        if self._closed:
            return
        self._stop_background()
        with self.lock:
            if self._closed:
                return
            self.flush()
            if self._wal is not None:
                self._wal.close()
            self._closed = True

    def abandon(self) -> None:
        """Release files and workers without a snapshot: the disk keeps only the WAL's story.

        For a caller whose commit failed after the index write: reopening with
        ``committed`` then rolls back what this object still holds in memory.
        """
        if self._closed:
            return
        self._stop_background()
        with self.lock:
            if self._wal is not None:
                self._wal.close()
            self._closed = True

    @classmethod
    def open(cls, path: str, committed: int | None = None) -> WalIndex:
        """Reopen: load the snapshot, replay the WAL up to stamp ``committed`` (None: all)."""
        root = Path(path)
        try:
            meta = json.loads((root / META).read_text())
        except FileNotFoundError:
            raise NotFound(f"no index at {path}", field="path") from None
        snapshot_stamp = int(meta.get("snapshot_stamp", 0))
        if committed is not None and snapshot_stamp > committed:
            raise FailedPrecondition(
                f"the index snapshot at {path} holds writes up to stamp {snapshot_stamp}, "
                f"but only {committed} were committed; it cannot be rolled back",
                field="path",
            )
        self = cls.__new__(cls)
        self._setup(int(meta["dim"]), meta["metric"], root)
        self._restore_options(dict(meta.get("options", {})))
        self._init_state()
        snap = root / self.snapshot_name
        if snap.exists():
            self._load_snapshot(snap.read_bytes())
        self._start_background()
        snapshot_lsn = int(meta["snapshot_lsn"])
        self._wal = WriteAheadLog(
            root / "wal",
            start_lsn=snapshot_lsn,
            start_stamp=snapshot_stamp,
            max_stamp=committed,
        )
        with self.lock:
            for rec in self._wal.replay(after=snapshot_lsn):
                if rec.op == OP_ADD:
                    assert rec.vectors is not None
                    self._apply_add(rec.ids, rec.vectors)
                elif rec.op == OP_REMOVE:
                    self._apply_remove(rec.ids)
            self._after_replay()
        return self

    @property
    def wal_bytes(self) -> int:
        """Bytes of WAL segments on disk (0 in memory); cheap, takes no lock."""
        return self._wal.size_bytes if self._wal is not None else 0

    @property
    def wal_records(self) -> int:
        """WAL records no snapshot covers, which a reopen would replay; cheap, takes no lock."""
        return self._wal.records if self._wal is not None else 0

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        if self._wal is not None:
            stats["wal_lsn"] = self._wal.last_lsn
            stats["wal_records"] = self._wal.records
            stats["wal_bytes"] = self._wal.size_bytes
        return stats
