"""Persistence of linkage jobs, scored pairs and entity ids (SQLAlchemy 2 typed ORM).

The tables (`veclink.linkage.store_rows`) are created on their own, so they can live in
the service catalog's database or any other: ``create_tables(engine)`` then
`LinkageStore(engine)`. Results of a job are written in one transaction (nothing
half-written); pages are read by offset.

A finished job also keeps what its incremental matcher is rebuilt from after a restart:
named byte strings (``veclink.linkage.matcher_state``), stored in chunks, and the log of
records `Match` assigned since, replayed in order on the rebuilt matcher.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from veclink.linkage.store_rows import (
    EntityRow,
    JobRow,
    MatcherPartRow,
    MatchLogRow,
    PairRow,
    create_tables,
    utcnow,
)

from veclink.errors import InvalidArgument, NotFound

JOB_KINDS = ("link", "dedupe")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
#: bytes per stored chunk of matcher state (well under every database's value limit)
MATCHER_CHUNK = 8 * 2**20
_CHILDREN = (PairRow, EntityRow, MatcherPartRow, MatchLogRow)

__all__ = ["JobInfo", "LinkageStore", "create_tables"]


@dataclasses.dataclass(frozen=True)
class JobInfo:
    job_id: str
    kind: str
    state: str
    stage: str
    progress: float
    spec: dict[str, Any]
    left_source: str
    right_source: str
    metrics: dict[str, Any]
    error: str
    created_at: dt.datetime
    finished_at: dt.datetime | None


def _info(row: JobRow) -> JobInfo:
    return JobInfo(
        row.id,
        row.kind,
        row.state,
        row.stage,
        row.progress,
        dict(row.spec),
        row.left_source,
        row.right_source,
        dict(row.metrics or {}),
        row.error,
        row.created_at,
        row.finished_at,
    )


class LinkageStore:
    """Jobs and their results in SQL."""

    def __init__(self, engine: Engine, *, create: bool = True) -> None:
        self.engine = engine
        if create:
            create_tables(engine)

    def create_job(
        self, kind: str, spec: dict[str, Any], *, left_source: str = "", right_source: str = ""
    ) -> str:
        if kind not in JOB_KINDS:
            raise InvalidArgument(f"job kind must be one of {', '.join(JOB_KINDS)}", field="kind")
        job_id = uuid.uuid4().hex
        with Session(self.engine) as s, s.begin():
            s.add(
                JobRow(
                    id=job_id,
                    kind=kind,
                    state="queued",
                    spec=_jsonable(spec),
                    left_source=left_source[:1024],
                    right_source=right_source[:1024],
                    metrics={},
                    error="",
                )
            )
        return job_id

    def update_job(
        self,
        job_id: str,
        *,
        state: str | None = None,
        stage: str | None = None,
        progress: float | None = None,
        metrics: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        if state is not None and state not in JOB_STATES:
            raise InvalidArgument(
                f"job state must be one of {', '.join(JOB_STATES)}", field="state"
            )
        with Session(self.engine) as s, s.begin():
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"linkage job {job_id!r} not found", field="job_id")
            if state is not None:
                row.state = state
                if state in ("succeeded", "failed", "cancelled"):
                    row.finished_at = utcnow()
            if stage is not None:
                row.stage = stage
            if progress is not None:
                row.progress = float(progress)
            if metrics is not None:
                row.metrics = _jsonable(metrics)
            if error is not None:
                row.error = error

    def get_job(self, job_id: str) -> JobInfo:
        with Session(self.engine) as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"linkage job {job_id!r} not found", field="job_id")
            return _info(row)

    def list_jobs(self, *, limit: int = 100) -> list[JobInfo]:
        with Session(self.engine) as s:
            rows = s.scalars(select(JobRow).order_by(JobRow.created_at.desc()).limit(limit))
            return [_info(r) for r in rows]

    def job_counts(self) -> dict[tuple[str, str], int]:
        """How many jobs there are of each (kind, state); every pair, 0 included."""
        counts = dict.fromkeys(((k, s) for k in JOB_KINDS for s in JOB_STATES), 0)
        with Session(self.engine) as s:
            query = select(JobRow.kind, JobRow.state, func.count()).group_by(
                JobRow.kind, JobRow.state
            )
            for kind, state, n in s.execute(query):
                counts[(kind, state)] = int(n)
        return counts

    def delete_job(self, job_id: str) -> None:
        with Session(self.engine) as s, s.begin():
            # children first: SQLite enforces ON DELETE CASCADE only with foreign_keys on
            for child in _CHILDREN:
                s.execute(delete(child).where(child.job_id == job_id))
            if s.execute(delete(JobRow).where(JobRow.id == job_id)).rowcount == 0:
                raise NotFound(f"linkage job {job_id!r} not found", field="job_id")

    def save_results(
        self,
        job_id: str,
        *,
        pairs: Iterable[tuple[str, str, float, bool]],
        entities: Iterable[tuple[str, str, str]],
        metrics: dict[str, Any],
        matcher: Mapping[str, bytes] | None = None,
    ) -> None:
        """Replace the job's pairs and entities and mark it succeeded, in one transaction.

        Args:
            pairs: ``(left_id, right_id, score, accepted)``.
            entities: ``(side, record_id, entity_id)``.
            matcher: the state its matcher is rebuilt from (named byte strings); replaces
                any stored before and clears the match log.
        """
        pair_rows = [
            {
                "job_id": job_id,
                "left_id": a,
                "right_id": b,
                "score": float(sc),
                "accepted": bool(ok),
            }
            for a, b, sc, ok in pairs
        ]
        ent_rows = [
            {"job_id": job_id, "side": side, "record_id": rid, "entity_id": ent}
            for side, rid, ent in entities
        ]
        with Session(self.engine) as s, s.begin():
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"linkage job {job_id!r} not found", field="job_id")
            for child in _CHILDREN:
                s.execute(delete(child).where(child.job_id == job_id))
            for chunk in _chunks(pair_rows, 5000):
                s.execute(insert(PairRow), chunk)
            for chunk in _chunks(ent_rows, 5000):
                s.execute(insert(EntityRow), chunk)
            for name, data in (matcher or {}).items():
                # one chunk at a time: a state of hundreds of MB is never copied whole
                for i, start in enumerate(range(0, max(len(data), 1), MATCHER_CHUNK)):
                    s.execute(
                        insert(MatcherPartRow),
                        [
                            {
                                "job_id": job_id,
                                "name": name,
                                "chunk": i,
                                "data": bytes(data[start : start + MATCHER_CHUNK]),
                            }
                        ],
                    )
            row.metrics = _jsonable(metrics)
            row.state, row.stage, row.progress = "succeeded", "done", 1.0
            row.finished_at = utcnow()

    def save_link_result(
        self, job_id: str, result: Any, *, matcher: Mapping[str, bytes] | None = None
    ) -> None:
        """Persist a `LinkResult`: its selected pairs (accepted flagged) and entities."""
        c = result.candidates
        rows = [int(p) for p in (result.selected | result.accepted).nonzero()[0]]
        pairs = [
            (
                result.left.ids[int(c.left[p])],
                result.right.ids[int(c.right[p])],
                float(result.scores[p]),
                bool(result.accepted[p]),
            )
            for p in rows
        ]
        self.save_results(
            job_id,
            pairs=pairs,
            entities=result.entities(),
            metrics=result.metrics(),
            matcher=matcher,
        )

    def save_dedupe_result(
        self, job_id: str, result: Any, *, matcher: Mapping[str, bytes] | None = None
    ) -> None:
        """Persist a `DedupeResult`: its accepted pairs and every record's entity id."""
        c = result.candidates
        ids = result.table.ids
        pairs = [
            (ids[int(c.left[p])], ids[int(c.right[p])], float(result.scores[p]), True)
            for p in result.accepted.nonzero()[0]
        ]
        entities = [("left", rid, ent) for rid, ent in zip(ids, result.entity_ids(), strict=True)]
        self.save_results(
            job_id, pairs=pairs, entities=entities, metrics=result.metrics(), matcher=matcher
        )

    def pairs(
        self, job_id: str, *, offset: int = 0, limit: int = 1000, accepted_only: bool = True
    ) -> list[tuple[str, str, float]]:
        """A page of ``(left_id, right_id, score)``, best first."""
        self.get_job(job_id)
        q = select(PairRow.left_id, PairRow.right_id, PairRow.score).where(PairRow.job_id == job_id)
        if accepted_only:
            q = q.where(PairRow.accepted.is_(True))
        q = q.order_by(PairRow.score.desc(), PairRow.id).offset(offset).limit(limit)
        with Session(self.engine) as s:
            return [(a, b, float(sc)) for a, b, sc in s.execute(q)]

    def entities(
        self, job_id: str, *, offset: int = 0, limit: int = 1000
    ) -> list[tuple[str, str, str]]:
        """A page of ``(side, record_id, entity_id)`` in insertion order."""
        self.get_job(job_id)
        q = (
            select(EntityRow.side, EntityRow.record_id, EntityRow.entity_id)
            .where(EntityRow.job_id == job_id)
            .order_by(EntityRow.id)
            .offset(offset)
            .limit(limit)
        )
        with Session(self.engine) as s:
            return [tuple(r) for r in s.execute(q)]  # type: ignore[misc]

    def count_pairs(self, job_id: str, *, accepted_only: bool = True) -> int:
        q = select(func.count()).select_from(PairRow).where(PairRow.job_id == job_id)
        if accepted_only:
            q = q.where(PairRow.accepted.is_(True))
        with Session(self.engine) as s:
            return int(s.scalar(q) or 0)

    def matcher_parts(self, job_id: str) -> dict[str, bytes] | None:
        """The stored matcher state of a job (None if it has none).

        Raises:
            NotFound: no such job.
        """
        self.get_job(job_id)
        q = (
            select(MatcherPartRow.name, MatcherPartRow.data)
            .where(MatcherPartRow.job_id == job_id)
            .order_by(MatcherPartRow.name, MatcherPartRow.chunk)
        )
        parts: dict[str, list[bytes]] = {}
        with Session(self.engine) as s:
            for name, data in s.execute(q):
                parts.setdefault(name, []).append(bytes(data))
        return {name: b"".join(chunks) for name, chunks in parts.items()} or None

    def log_match(self, job_id: str, record_id: str, record: Mapping[str, Any]) -> None:
        """Append a record that `Match` assigned to the job's match log."""
        with Session(self.engine) as s, s.begin():
            s.add(MatchLogRow(job_id=job_id, record_id=record_id, record=_jsonable(dict(record))))

    def logged_matches(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The job's match log, ``(record_id, record)`` in the order they were assigned."""
        q = (
            select(MatchLogRow.record_id, MatchLogRow.record)
            .where(MatchLogRow.job_id == job_id)
            .order_by(MatchLogRow.id)
        )
        with Session(self.engine) as s:
            return [(rid, dict(rec)) for rid, rec in s.execute(q)]


def _chunks(rows: Sequence[dict[str, Any]], n: int) -> Iterable[Sequence[dict[str, Any]]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON (numpy scalars and tuples become plain JSON values)."""

    def default(o: Any) -> Any:
        if hasattr(o, "item"):
            return o.item()
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    return json.loads(json.dumps(value, default=default))
