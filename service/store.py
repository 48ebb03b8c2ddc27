"""VectorStore: the catalog, one vector index per collection, and the served models.

Write path (per collection, serialised by a lock): validate the whole batch, embed it, stage
the catalog rows, write the index (WAL, durable on return), then commit the catalog, which
is the commit point.

Atomicity rests on one number per collection, ``write_version`` in its catalog row. Every
write takes the next one: the catalog transaction stores it and the index WAL record carries
it as its stamp. A crash after the WAL fsync but before the catalog commit leaves a WAL
record stamped above the catalog's ``write_version``; opening the collection reopens the
index with ``committed=write_version``, which cuts that record (and nothing else) from the
WAL before replay. So the index comes back exactly as the last committed write left it:
vectors, texts and payloads of an acknowledged write survive together, and an
unacknowledged replacement or delete leaves no trace, torn or whole. A write whose index
step or commit fails in a running process takes the same road: the collection's index is
abandoned (no snapshot) and reopened from disk on the next call.

Checkpoints: after a commit, under the collection's write lock, the index is snapshotted
and its WAL truncated when the `CheckpointPolicy` says so (records, bytes, age); the server
also checks idle collections periodically. Snapshots are therefore only taken when every
stamped index write is committed, which the index checks on open. Readers (Get, Search)
share a readers-writer lock whose write side covers only index write + commit, so no
reader sees a vector its catalog row does not yet have.

Sharded collections (``shards`` >= 1) keep their vectors in a
`veclink.cluster.sharded.ShardedIndex` instead: in-process shards in embedded mode, Ray
actors in cluster mode (``cluster`` given). The store drives it like one index: the same
stamps, the same rollback on reopen, the same checkpoints; the catalog stays here.

Observability: ``on_encode`` and ``on_search`` (set by the server's metrics) hear of every
encode and index search with its duration, and `collection_usage` reports what each open
collection holds without touching the catalog (its record count is kept up to date by the
writes themselves).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from veclink.cluster.sharded import LocalShards, ShardedIndex
from veclink.encoders import Encoder
from veclink.encoders.batcher import Ticket
from veclink.encoders.outputs import PRECISIONS, quantize, truncate
from veclink.index import CheckpointPolicy, WalIndex, create_index, open_index
from veclink.index.base import check_metric, normalize_rows
from veclink.index.locks import SharedLock
from veclink.service.catalog import CollectionRow, RecordRow, open_catalog
from veclink.service.models import ModelRegistry
from veclink.service.settings import LimitSettings

from veclink.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    VeclinkError,
)
from veclink.wire.types import (
    MAX_ID_LENGTH,
    CollectionInfo,
    Embeddings,
    Hit,
    RecordIn,
    SearchQuery,
    StoredRecord,
    check_collection_name,
)

if TYPE_CHECKING:  # Ray is imported in cluster mode only
    from veclink.cluster.runtime import RayCluster

log = logging.getLogger(__name__)


#: the bounds a store checks requests against: the ``[limits]`` settings themselves (an
#: alias kept for the callers that build them by this name)
Limits = LimitSettings


@dataclasses.dataclass(frozen=True)
class CollectionUsage:
    """What an open collection holds, for gauges (see `VectorStore.collection_usage`)."""

    name: str
    index_kind: str
    #: records in the catalog
    records: int
    #: live vectors in the index
    vectors: int
    #: bytes of index WAL on disk, and the WAL records a restart would replay
    wal_bytes: int
    wal_records: int


#: what a collection's vectors live in: one index, or shards behind the same surface
CollectionIndex = WalIndex | ShardedIndex


class _Open:
    """An open collection: its catalog row snapshot, index, encoder and locks."""

    def __init__(
        self, row: CollectionRow, index: CollectionIndex, encoder: Encoder | None, records: int
    ) -> None:
        self.row = row
        self.index = index
        self.encoder = encoder
        #: catalog records, counted on open and kept by every committed write
        self.records = records
        #: serialises writers from catalog read to commit
        self.lock = threading.Lock()
        #: exclusive over index write + catalog commit; readers share it
        self.visible = SharedLock()


class VectorStore:
    """Collections of records with vectors, backed by SQL and one index per collection."""

    def __init__(
        self,
        data_dir: str | Path,
        models: ModelRegistry,
        *,
        database_url: str | None = None,
        default_index_kind: str = "partitioned",
        limits: LimitSettings | None = None,
        checkpoints: CheckpointPolicy | None = None,
        cluster: RayCluster | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        #: the Ray cluster of cluster mode (None: embedded, every shard in this process)
        self.cluster = cluster
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "indexes").mkdir(exist_ok=True)
        url = database_url or f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"
        self.engine, self.sessions = open_catalog(url)
        #: the DBAPI driver's parameter marker, for the hits' query (`_hit_rows`)
        self._placeholder = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(
            self.engine.dialect.paramstyle
        )
        self.models = models
        self.default_index_kind = default_index_kind
        self.limits = limits or LimitSettings()
        self.checkpoints = checkpoints or CheckpointPolicy()
        self._open: dict[str, _Open] = {}
        self._lock = threading.RLock()
        #: told ``(model, inputs, seconds)`` after every encode (None: nobody listens)
        self.on_encode: Callable[[str, int, float], None] | None = None
        #: told ``(index kind, seconds)`` after every index search
        self.on_search: Callable[[str, float], None] | None = None
        self._remove_orphan_index_dirs()

    # ------------------------------------------------------------------ collections

    def create_collection(
        self,
        name: str,
        *,
        model: str = "",
        dim: int = 0,
        metric: str = "cosine",
        index_kind: str = "",
        index_options: dict[str, Any] | None = None,
        shards: int = 0,
    ) -> CollectionInfo:
        """Create a collection; ``shards`` >= 1 spreads its vectors over that many shards."""
        check_collection_name(name)
        check_metric(metric)
        if not isinstance(shards, int) or not 0 <= shards <= self.limits.max_shards:
            raise InvalidArgument(
                f"shards must be in 0..{self.limits.max_shards}; got {shards!r}", field="shards"
            )
        index_kind = index_kind or self.default_index_kind
        spec_dict: dict[str, Any] | None = None
        if model:
            spec = self.models.spec(model)
            model_dim = self.models.for_spec(spec).dim
            if dim and dim != model_dim:
                raise InvalidArgument(
                    f"dimensions={dim} does not match model {model!r} ({model_dim})",
                    field="dimensions",
                )
            dim = model_dim
            spec_dict = spec.to_dict()
        elif dim <= 0:
            raise InvalidArgument(
                "a vectors-only collection (no model) needs dimensions > 0", field="dimensions"
            )
        with self._lock, self.sessions() as session:
            if session.scalar(select(CollectionRow.id).where(CollectionRow.name == name)):
                raise AlreadyExists(f"collection {name!r} already exists", field="name")
            index_dir = uuid.uuid4().hex
            path = self.data_dir / "indexes" / index_dir
            if shards:
                index: CollectionIndex = self._create_sharded(
                    index_kind, dim, metric, path, index_options or {}, shards
                )
            else:
                index = self._create_index(index_kind, dim, metric, path, index_options or {})
            row = CollectionRow(
                name=name,
                model=model,
                encoder_spec=spec_dict,
                dim=dim,
                metric=metric,
                index_kind=index_kind,
                index_options=dict(index_options or {}),
                index_dir=index_dir,
                next_vector_id=0,
                shards=shards,
                shard_nodes=_shard_nodes(index),
            )
            session.add(row)
            try:
                session.commit()
            except IntegrityError as exc:  # a concurrent create of the same name
                if isinstance(index, ShardedIndex):
                    index.drop()  # each shard deletes its directory on its own node
                else:
                    index.close()
                shutil.rmtree(path, ignore_errors=True)
                raise AlreadyExists(f"collection {name!r} already exists", field="name") from exc
            encoder = self.models.for_spec(spec_dict) if spec_dict else None
            self._open[name] = _Open(row, index, encoder, records=0)
            return self._info(session, row, None, count=0)

    def _create_index(
        self, kind: str, dim: int, metric: str, path: Path, options: dict[str, Any]
    ) -> WalIndex:
        try:
            return create_index(kind, dim, metric=metric, path=str(path), **options)
        except VeclinkError:
            shutil.rmtree(path, ignore_errors=True)
            raise
        except (TypeError, ValueError) as exc:
            shutil.rmtree(path, ignore_errors=True)
            raise InvalidArgument(f"invalid index options: {exc}", field="index_options") from exc

    def _create_sharded(
        self,
        kind: str,
        dim: int,
        metric: str,
        path: Path,
        options: dict[str, Any],
        shards: int,
    ) -> ShardedIndex:
        # options are checked here, where a mistake is an InvalidArgument, not in a shard
        self._create_index(kind, dim, metric, path, options).abandon()
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        create = {"kind": kind, "dim": dim, "metric": metric, "options": options}
        try:
            return ShardedIndex(
                self._shard_group(path, shards, create, None), kind=kind, dim=dim, metric=metric
            )
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise

    def _shard_group(
        self, path: Path, shards: int, create: dict[str, Any] | None, nodes: list[str] | None
    ) -> Any:
        if self.cluster is not None:
            return self.cluster.open_shards(path, shards, create, nodes)
        return LocalShards.open(path, shards, create)

    def get_collection(self, name: str) -> CollectionInfo:
        coll = self._collection(name)
        with self.sessions() as session:
            return self._info(session, coll.row, coll.index)

    def list_collections(self) -> list[CollectionInfo]:
        """All collections with their record counts (indexes are not opened for this)."""
        with self.sessions() as session:
            counts = dict(
                session.execute(
                    select(RecordRow.collection_id, func.count()).group_by(RecordRow.collection_id)
                ).all()
            )
            rows = session.scalars(select(CollectionRow).order_by(CollectionRow.name)).all()
            return [self._info(session, row, None, count=counts.get(row.id, 0)) for row in rows]

    def delete_collection(self, name: str) -> None:
        check_collection_name(name)
        with self._lock:
            coll = self._collection(name)
            with coll.lock, self.sessions() as session:
                session.execute(delete(RecordRow).where(RecordRow.collection_id == coll.row.id))
                session.execute(delete(CollectionRow).where(CollectionRow.id == coll.row.id))
                session.commit()
                if isinstance(coll.index, ShardedIndex):
                    coll.index.drop()  # each shard deletes its directory on its own node
                else:
                    coll.index.close()
                self._open.pop(name, None)
                shutil.rmtree(self.data_dir / "indexes" / coll.row.index_dir, ignore_errors=True)

    def _info(
        self,
        session: Session,
        row: CollectionRow,
        index: CollectionIndex | None,
        count: int | None = None,
    ) -> CollectionInfo:
        """Describe a collection; index statistics only when ``index`` is given."""
        if count is None:
            count = session.scalar(
                select(func.count()).select_from(RecordRow).where(RecordRow.collection_id == row.id)
            )
        return CollectionInfo(
            name=row.name,
            model=row.model,
            dim=row.dim,
            metric=row.metric,
            index_kind=row.index_kind,
            index_options=dict(row.index_options or {}),
            count=int(count or 0),
            created_at=row.created_at,
            shards=int(row.shards or 0),
            index_stats=_jsonable(index.stats()) if index is not None else {},
        )

    def _collection(self, name: str) -> _Open:
        coll = self._open.get(name)
        if coll is not None:
            return coll
        with self._lock:
            coll = self._open.get(name)
            if coll is not None:
                return coll
            with self.sessions() as session:
                row = session.scalar(select(CollectionRow).where(CollectionRow.name == name))
                if row is None:
                    raise NotFound(f"collection {name!r} does not exist", field="collection")
                index = self._open_index(row)
                records = self._reconcile(session, row, index)
            encoder = self.models.for_spec(row.encoder_spec) if row.encoder_spec else None
            coll = _Open(row, index, encoder, records)
            self._open[name] = coll
            return coll

    def _open_index(self, row: CollectionRow) -> CollectionIndex:
        """Reopen a collection's index (or shards) as its last committed write left it."""
        path = self.data_dir / "indexes" / row.index_dir
        if not row.shards:
            return open_index(str(path), committed=row.write_version)
        group = self._shard_group(path, row.shards, None, row.shard_nodes)
        index = ShardedIndex(group, kind=row.index_kind, dim=row.dim, metric=row.metric)
        index.rollback(row.write_version)
        return index

    def open_all(self) -> int:
        """Open every collection now (index replay, reconciliation); returns how many opened."""
        with self.sessions() as session:
            names = list(session.scalars(select(CollectionRow.name)))
        opened = 0
        for name in names:
            try:
                self._collection(name)
                opened += 1
            except VeclinkError as exc:  # the collection's calls report it; serve the others
                log.error("collection %s cannot be opened: %s", name, exc)
        return opened

    def wal_records(self) -> int:
        """WAL records of the open indexes that no snapshot covers: what a start replays."""
        with self._lock:
            return sum(int(c.index.stats().get("wal_records", 0)) for c in self._open.values())

    def collection_usage(self) -> list[CollectionUsage]:
        """Records, vectors and WAL of every open collection, by name; cheap (no SQL, no lock).

        Collections not opened (one that failed to open) are left out.
        """
        return sorted(
            (
                CollectionUsage(
                    name=name,
                    index_kind=coll.row.index_kind,
                    records=coll.records,
                    vectors=len(coll.index),
                    wal_bytes=coll.index.wal_bytes,
                    wal_records=coll.index.wal_records,
                )
                for name, coll in list(self._open.items())
            ),
            key=lambda usage: usage.name,
        )

    def _reconcile(self, session: Session, row: CollectionRow, index: CollectionIndex) -> int:
        """Check that the catalog and the index agree, and repair what cannot be rolled back.

        Returns the collection's catalog record count once they agree.

        Stamps make both sides agree after any crash; a difference here comes from an index
        written before stamps existed.
        """
        catalog_ids = np.fromiter(
            session.scalars(select(RecordRow.vector_id).where(RecordRow.collection_id == row.id)),
            dtype=np.int64,
        )
        index_ids = index.ids()
        orphans = np.setdiff1d(index_ids, catalog_ids)
        if orphans.size:
            log.warning("collection %s: removing %d unacknowledged vectors", row.name, orphans.size)
            index.remove(orphans, stamp=row.write_version)
        missing = np.setdiff1d(catalog_ids, index_ids)
        if missing.size:
            # only a delete interrupted after its index write leaves these: finish it
            log.warning(
                "collection %s: finishing an interrupted delete of %d", row.name, missing.size
            )
            session.execute(
                delete(RecordRow).where(
                    RecordRow.collection_id == row.id, RecordRow.vector_id.in_(missing.tolist())
                )
            )
            session.commit()
        return int(catalog_ids.size - missing.size)

    def _remove_orphan_index_dirs(self) -> None:
        with self.sessions() as session:
            known = set(session.scalars(select(CollectionRow.index_dir)))
        for path in (self.data_dir / "indexes").iterdir():
            if path.name not in known:
                log.warning("removing index directory %s of no collection", path)
                shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------------ records

    def upsert(self, collection: str, records: Sequence[RecordIn]) -> tuple[int, int]:
        """Insert or replace records; all-or-nothing. Returns (upserted, created)."""
        coll = self._collection(collection)
        if not records:
            return 0, 0
        if len(records) > self.limits.max_batch:
            raise ResourceExhausted(
                f"{len(records)} records in one request; the limit is {self.limits.max_batch}",
                field="records",
            )
        vectors = self._record_vectors(coll, records)
        ext_ids = [r.id for r in records]
        with coll.lock, self.sessions() as session:
            existing = {
                r.external_id: r
                for r in session.scalars(
                    select(RecordRow).where(
                        RecordRow.collection_id == coll.row.id, RecordRow.external_id.in_(ext_ids)
                    )
                )
            }
            row = session.get(CollectionRow, coll.row.id, with_for_update=True)
            assert row is not None  # held by coll.lock
            next_id = row.next_vector_id
            vector_ids = np.empty(len(records), dtype=np.int64)
            for i, rec in enumerate(records):
                old = existing.get(rec.id)
                if old is None:
                    vector_ids[i] = next_id
                    next_id += 1
                    session.add(
                        RecordRow(
                            collection_id=row.id,
                            external_id=rec.id,
                            vector_id=int(vector_ids[i]),
                            text=rec.text,
                            payload=rec.payload,
                        )
                    )
                else:
                    vector_ids[i] = old.vector_id
                    old.text = rec.text
                    old.payload = rec.payload
            row.next_vector_id = next_id
            self._commit_write(
                coll, session, row, lambda stamp: coll.index.add(vector_ids, vectors, stamp=stamp)
            )
            coll.row.next_vector_id = next_id
            coll.records += len(records) - len(existing)
        return len(records), len(records) - len(existing)

    def _commit_write(
        self,
        coll: _Open,
        session: Session,
        row: CollectionRow,
        write_index: Callable[[int], object],
    ) -> None:
        """Stamp the staged catalog changes, write the index, commit (see the module notes)."""
        stamp = row.write_version + 1
        row.write_version = stamp
        session.flush()
        try:
            with coll.visible:
                write_index(stamp)
                session.commit()
        except BaseException:
            # the index may hold a write the catalog does not: drop it from memory and let
            # the next call reopen the index up to the catalog's last commit
            # (files closed first, so that the reopen is the only writer of the WAL)
            log.warning("collection %s: write failed, reopening its index", coll.row.name)
            coll.index.abandon()
            if self._open.get(coll.row.name) is coll:
                self._open.pop(coll.row.name, None)
            raise
        coll.row.write_version = stamp
        if coll.index.checkpoint_due(self.checkpoints):
            coll.index.flush()

    def checkpoint_idle(self) -> int:
        """Snapshot the collections whose WAL is due and that no writer holds; returns how many."""
        done = 0
        for coll in list(self._open.values()):
            if not coll.lock.acquire(blocking=False):
                continue  # its writer checks after its commit
            try:
                if coll.index.checkpoint_due(self.checkpoints):
                    coll.index.flush()
                    done += 1
            finally:
                coll.lock.release()
        return done

    def _record_vectors(self, coll: _Open, records: Sequence[RecordIn]) -> np.ndarray:
        """Validate every record, then embed/collect their vectors (float32 (n, dim))."""
        seen: set[str] = set()
        dim = coll.row.dim
        vectors = np.empty((len(records), dim), dtype=np.float32)
        to_encode: list[int] = []
        for i, rec in enumerate(records):
            field = f"records[{i}]"
            if not rec.id:
                raise InvalidArgument(f"{field}.id is empty", field=f"{field}.id")
            if len(rec.id) > MAX_ID_LENGTH:
                raise InvalidArgument(
                    f"{field}.id is longer than {MAX_ID_LENGTH} characters", field=f"{field}.id"
                )
            if rec.id in seen:
                raise InvalidArgument(
                    f"{field}.id {rec.id!r} appears twice in the batch", field=f"{field}.id"
                )
            seen.add(rec.id)
            if rec.text is not None:
                if not rec.text.strip():
                    raise InvalidArgument(f"{field}.text is empty", field=f"{field}.text")
                if len(rec.text) > self.limits.max_text_chars:
                    raise ResourceExhausted(
                        f"{field}.text has {len(rec.text)} characters; the limit is "
                        f"{self.limits.max_text_chars}",
                        field=f"{field}.text",
                    )
            if rec.vector is None and rec.text is None and rec.image is None:
                raise InvalidArgument(f"{field} needs a text, an image or a vector", field=field)
            if rec.vector is not None:
                vec = np.asarray(rec.vector, dtype=np.float32).reshape(-1)
                if vec.size != dim:
                    raise InvalidArgument(
                        f"{field}.vector has dimension {vec.size}; collection "
                        f"{coll.row.name!r} has dimension {dim}",
                        field=f"{field}.vector",
                    )
                if not np.isfinite(vec).all():
                    raise InvalidArgument(
                        f"{field}.vector contains NaN or infinity", field=f"{field}.vector"
                    )
                vectors[i] = vec
                continue
            if coll.encoder is None:
                raise InvalidArgument(
                    f"{field} has no vector, and collection {coll.row.name!r} has no model "
                    "to embed text or images",
                    field=field,
                )
            to_encode.append(i)
        if to_encode:
            assert coll.encoder is not None
            # an image is embedded when given (its text is then only stored, as a caption)
            inputs = [
                records[i].image if records[i].image is not None else records[i].text
                for i in to_encode
            ]
            try:
                vectors[to_encode] = self._encode(
                    coll.encoder,
                    coll.row.model,
                    inputs,  # type: ignore[arg-type]
                    "document",
                )
            except InvalidArgument as exc:
                raise _reindex(exc, to_encode, "records") from exc
        if coll.row.metric == "cosine":
            vectors = normalize_rows(vectors)
        return vectors

    def delete(self, collection: str, ids: Sequence[str]) -> int:
        coll = self._collection(collection)
        if len(ids) > self.limits.max_ids:
            raise ResourceExhausted(
                f"{len(ids)} ids in one request; the limit is {self.limits.max_ids}", field="ids"
            )
        if not ids:
            return 0
        with coll.lock, self.sessions() as session:
            rows = list(
                session.scalars(
                    select(RecordRow).where(
                        RecordRow.collection_id == coll.row.id,
                        RecordRow.external_id.in_(list(ids)),
                    )
                )
            )
            if not rows:
                return 0
            row = session.get(CollectionRow, coll.row.id, with_for_update=True)
            assert row is not None  # held by coll.lock
            for r in rows:
                session.delete(r)
            vector_ids = np.array([r.vector_id for r in rows], dtype=np.int64)
            self._commit_write(
                coll, session, row, lambda stamp: coll.index.remove(vector_ids, stamp=stamp)
            )
            coll.records -= len(rows)
            return len(rows)

    def get(
        self, collection: str, ids: Sequence[str], with_vectors: bool = False
    ) -> tuple[list[StoredRecord], list[str]]:
        coll = self._collection(collection)
        if len(ids) > self.limits.max_ids:
            raise ResourceExhausted(
                f"{len(ids)} ids in one request; the limit is {self.limits.max_ids}", field="ids"
            )
        with coll.visible.shared(), self.sessions() as session:
            rows = {
                r.external_id: r
                for r in session.scalars(
                    select(RecordRow).where(
                        RecordRow.collection_id == coll.row.id,
                        RecordRow.external_id.in_(list(ids)),
                    )
                )
            }
            found = [rows[i] for i in ids if i in rows]
            vecs = (
                coll.index.get(np.array([r.vector_id for r in found], dtype=np.int64))
                if with_vectors and found
                else None
            )
        records = [
            StoredRecord(
                id=r.external_id,
                text=r.text,
                payload=dict(r.payload or {}),
                vector=None if vecs is None else vecs[j],
            )
            for j, r in enumerate(found)
        ]
        return records, [i for i in ids if i not in rows]

    def search(self, q: SearchQuery) -> list[Hit]:
        coll = self._collection(q.collection)
        if not 1 <= q.k <= self.limits.max_k:
            raise InvalidArgument(f"k must be in 1..{self.limits.max_k}; got {q.k}", field="k")
        query = self._query_vector(coll, q)
        params: dict[str, Any] = {}
        if q.nprobe:
            params["nprobe"] = q.nprobe
        size = len(coll.index)
        fetch = q.k if q.filter is None else min(max(4 * q.k, 64), max(size, 1))
        while True:
            with coll.visible.shared():
                began = time.perf_counter()
                scores, vids = coll.index.search(query, min(fetch, max(size, 1)), **params)
                if self.on_search is not None:
                    self.on_search(coll.row.index_kind, time.perf_counter() - began)
                hits = self._hits(coll, scores[0], vids[0], q)
            if len(hits) >= q.k or fetch >= size:
                return hits[: q.k]
            fetch *= 4  # the filter rejected too many: look deeper

    def _query_vector(self, coll: _Open, q: SearchQuery) -> np.ndarray:
        given = [x is not None for x in (q.vector, q.text, q.image)]
        if sum(given) != 1:
            raise InvalidArgument("query needs exactly one of vector, text or image", field="query")
        if q.vector is not None:
            vec = np.asarray(q.vector, dtype=np.float32).reshape(1, -1)
            if vec.shape[1] != coll.row.dim:
                raise InvalidArgument(
                    f"query vector has dimension {vec.shape[1]}; collection "
                    f"{coll.row.name!r} has dimension {coll.row.dim}",
                    field="vector",
                )
            if not np.isfinite(vec).all():
                raise InvalidArgument("query vector contains NaN or infinity", field="vector")
            return vec
        if coll.encoder is None:
            raise InvalidArgument(
                f"collection {coll.row.name!r} has no model; search it with a vector",
                field="query",
            )
        if q.text is not None and not q.text.strip():
            raise InvalidArgument("query text is empty", field="text")
        content = q.text if q.text is not None else q.image
        encoder = coll.encoder.with_instruction(q.instruction) if q.instruction else coll.encoder
        try:
            return self._encode(encoder, coll.row.model, [content], "query")  # type: ignore[list-item]
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message.replace("inputs[0]", "query"), field="query") from exc

    def _hits(self, coll: _Open, scores: np.ndarray, vids: np.ndarray, q: SearchQuery) -> list[Hit]:
        keep = vids >= 0
        scores, vids = scores[keep], vids[keep]
        if not vids.size:
            return []
        rows = self._hit_rows(coll, vids.tolist(), q.with_payload or q.filter is not None)
        hits = []
        for score, vid in zip(scores.tolist(), vids.tolist(), strict=True):
            row = rows.get(vid)
            if row is None:  # written to the index, not (yet) to the catalog
                continue
            external_id, text, payload = row
            payload = dict(payload or {})
            if q.filter is not None and not q.filter.matches(payload):
                continue
            hits.append(
                Hit(
                    id=external_id,
                    score=float(score),
                    text=text,
                    payload=payload if q.with_payload else {},
                    vector=coll.index.get(np.array([vid]))[0] if q.with_vectors else None,
                )
            )
            if len(hits) == q.k:
                break
        return hits

    def _hit_rows(
        self, coll: _Open, vids: list[int], payload: bool
    ) -> dict[int, tuple[str, str | None, Any]]:
        """vector id -> (external id, text, payload or None) of the hits.

        A Core query on a pooled connection over only the columns a hit needs (the payload
        only when asked for or filtered on): the ORM session, identity map and row objects
        it replaces cost about 1 ms per search, more than the index search itself
        (BENCHMARKS.md, "Index search").
        """
        mark = self._placeholder
        if mark is None:  # a driver with another parameter style: through SQLAlchemy Core
            stmt = _HIT_ROWS_WITH_PAYLOAD if payload else _HIT_ROWS
            with self.engine.connect() as conn:
                found = conn.execute(stmt, {"collection": coll.row.id, "vids": vids}).all()
            return {r[0]: (r[1], r[2], r[3] if payload else None) for r in found}
        sql = (
            f"SELECT vector_id, external_id, text{', payload' if payload else ''} "
            f"FROM {RecordRow.__tablename__} WHERE collection_id = {mark} "
            f"AND vector_id IN ({', '.join([mark] * len(vids))})"
        )
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute(sql, [coll.row.id, *vids])
            result = cur.fetchall()
            cur.close()
            conn.commit()  # end the read transaction (SQLite WAL: let checkpoints proceed)
        finally:
            conn.close()  # back to the pool
        if payload:
            return {r[0]: (r[1], r[2], _json(r[3])) for r in result}
        return {r[0]: (r[1], r[2], None) for r in result}

    # ------------------------------------------------------------------ embeddings

    def embed_start(
        self,
        model: str,
        inputs: Sequence[str | bytes],
        *,
        role: str = "query",
        normalize: bool = False,
        dimensions: int = 0,
        instruction: str | None = None,
        precision: str = "float32",
        deadline: float | None = None,
    ) -> EmbedJob:
        """Check an Embed request and queue it on its model's batcher (without waiting).

        An instruction variant of a model has no batcher: its vectors are encoded here, on
        the calling thread. ``deadline`` (``time.monotonic()``) drops the request unencoded
        once passed.
        """
        if not inputs:
            raise InvalidArgument("inputs is empty", field="inputs")
        if len(inputs) > self.limits.max_embed_inputs:
            raise ResourceExhausted(
                f"{len(inputs)} inputs in one request; the limit is {self.limits.max_embed_inputs}",
                field="inputs",
            )
        for i, item in enumerate(inputs):
            if isinstance(item, str) and len(item) > self.limits.max_text_chars:
                raise ResourceExhausted(
                    f"inputs[{i}] has {len(item)} characters; the limit is "
                    f"{self.limits.max_text_chars}",
                    field=f"inputs[{i}]",
                )
        if precision not in PRECISIONS:
            raise InvalidArgument(
                f"options.precision must be one of {', '.join(PRECISIONS)}; got {precision!r}",
                field="options.precision",
            )
        name = model or self.models.default
        encoder = self.models.get(name)
        if instruction:
            encoder = encoder.with_instruction(instruction)
        if dimensions and dimensions > encoder.dim:
            raise InvalidArgument(
                f"dimensions={dimensions} exceeds model {name!r}'s {encoder.dim}",
                field="options.dimensions",
            )
        job = EmbedJob(self, name, len(inputs), normalize, dimensions, precision)
        batcher = self.models.batcher_of(encoder)
        if batcher is None:
            job.vectors = self._encode(encoder, name, list(inputs), role)
        else:
            job.ticket = batcher.submit(inputs, role, deadline=deadline)  # type: ignore[arg-type]
        return job

    def embed(
        self,
        model: str,
        inputs: Sequence[str | bytes],
        *,
        role: str = "query",
        normalize: bool = False,
        dimensions: int = 0,
        instruction: str | None = None,
        precision: str = "float32",
    ) -> Embeddings:
        """Encode inputs with a served model (`embed_start`, then wait for the vectors)."""
        job = self.embed_start(
            model,
            inputs,
            role=role,
            normalize=normalize,
            dimensions=dimensions,
            instruction=instruction,
            precision=precision,
        )
        if job.ticket is not None:
            try:
                job.vectors = job.ticket.result()
            except BaseException:
                job.ticket.cancel()
                raise
        return job.finish()

    def _encode(
        self, encoder: Encoder, model: str, inputs: list[str | bytes], role: str
    ) -> np.ndarray:
        """Encode through the encoder's batcher when it has one (sharing batches with
        concurrent requests), timed for ``on_encode`` (failed encodes are not reported)."""
        began = time.perf_counter()
        batcher = self.models.batcher_of(encoder)
        if batcher is not None:
            vectors = batcher.encode(inputs, role)  # type: ignore[arg-type]
        else:
            vectors = encoder.encode(inputs, role=role)  # type: ignore[arg-type]
        if self.on_encode is not None:
            self.on_encode(model, len(inputs), time.perf_counter() - began)
        return vectors

    def close(self) -> int:
        """Checkpoint (snapshot) and close every open collection's index; returns how many.

        A collection whose checkpoint fails is logged and left to its WAL, which the next
        start replays; the others are still checkpointed.
        """
        closed = 0
        with self._lock:
            for name, coll in self._open.items():
                try:
                    with coll.lock:
                        coll.index.close()
                    closed += 1
                except Exception:  # disk full, permissions: the WAL still holds every write
                    log.exception("collection %s: checkpoint at close failed", name)
            self._open.clear()
            self.engine.dispose()
        self.models.close()
        return closed


def _shard_nodes(index: CollectionIndex) -> list[str] | None:
    """The Ray nodes of a sharded index's shards (None: not placed by Ray)."""
    nodes = getattr(getattr(index, "group", None), "nodes", None)
    return list(nodes) if nodes else None


def _hit_rows_statement(*cols: Any) -> Any:
    """The hits' catalog rows by collection and vector ids (built once, compiled once)."""
    return select(RecordRow.vector_id, RecordRow.external_id, RecordRow.text, *cols).where(
        RecordRow.collection_id == bindparam("collection"),
        RecordRow.vector_id.in_(bindparam("vids", expanding=True)),
    )


_HIT_ROWS = _hit_rows_statement()
_HIT_ROWS_WITH_PAYLOAD = _hit_rows_statement(RecordRow.payload)


def _json(value: Any) -> Any:
    """A JSON column as the DBAPI driver returns it: text (SQLite) or decoded (psycopg)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


class EmbedJob:
    """An Embed request on its way: queued on a batcher (``ticket``) or encoded already
    (``vectors``); ``finish`` truncates, normalises and quantises as the request asked."""

    def __init__(
        self,
        store: VectorStore,
        model: str,
        count: int,
        normalize: bool,
        dimensions: int,
        precision: str,
    ) -> None:
        self.store = store
        self.model = model
        self.count = count
        self.normalize = normalize
        self.dimensions = dimensions
        self.precision = precision
        self.ticket: Ticket | None = None
        self.vectors: np.ndarray | None = None
        self.began = time.perf_counter()

    def finish(self) -> Embeddings:
        """The reply from ``vectors`` (set once the ticket's result is in)."""
        assert self.vectors is not None
        if self.ticket is not None and self.store.on_encode is not None:
            self.store.on_encode(self.model, self.count, time.perf_counter() - self.began)
        vectors = truncate(self.vectors, self.dimensions, normalize=self.normalize)
        values, scales = quantize(vectors, self.precision)
        return Embeddings(
            model=self.model,
            precision=self.precision,
            dimensions=int(vectors.shape[1]),
            values=values,
            scales=scales,
        )


def _reindex(exc: InvalidArgument, positions: list[int], prefix: str) -> InvalidArgument:
    """Rename ``inputs[j]`` in an encoder error to the caller's ``records[i]``."""
    field = exc.field or ""
    if field.startswith("inputs[") and field.endswith("]"):
        j = int(field[len("inputs[") : -1])
        name = f"{prefix}[{positions[j]}]"
        return InvalidArgument(exc.message.replace(field, name), field=name)
    return exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
