"""Linkage jobs run by the server: start in the background, persist, page results, match.

Inputs are validated (spec, tables, id columns) before a job is created, so a bad request
fails at once with INVALID_ARGUMENT and leaves nothing behind. Jobs run on a worker thread;
progress, results and entity ids are written to the catalog database through
`veclink.linkage.store.LinkageStore`. A finished job stores the state of its incremental
`Matcher` with its results; `Match` builds the matcher from it on first use (once, however
many calls arrive together), so it works after a restart, and replays the records earlier
`Match` calls assigned, so a restart loses no assignment.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Engine
from veclink.linkage import Table, dedupe, link, prepare_inputs, read_table
from veclink.linkage.matcher import Matcher
from veclink.linkage.matcher_state import MatcherState, load_matcher, matcher_state
from veclink.linkage.store import JobInfo, LinkageStore
from veclink.service.sources import JobSources

from veclink.errors import FailedPrecondition, InvalidArgument, VeclinkError
from veclink.wire import EntityCandidate, Job, MatchResult, TableSource

log = logging.getLogger(__name__)

FINAL_STATES = ("succeeded", "failed", "cancelled")
MAX_PAGE = 10_000


class LinkageJobs:
    """Starts, tracks and serves linkage jobs."""

    def __init__(
        self,
        engine: Engine,
        encoder_for: Any = None,
        workers: int = 1,
        sources: JobSources | None = None,
        job_arguments: Callable[[Any, Any], dict[str, Any]] | None = None,
    ) -> None:
        self.store = LinkageStore(engine)
        #: cluster mode: ``(spec, encoder) -> link/dedupe keyword arguments`` that run the
        #: job's stages on Ray (None: the job runs in this process)
        self.job_arguments = job_arguments
        self.engine = engine
        #: what ``sql`` and ``path`` sources may read (default: neither is allowed)
        self.sources = sources or JobSources()
        # jobs get their own threads so a long job never starves the RPC executor
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="veclink-linkage")
        #: ``spec dict -> Encoder``: shares loaded models with the rest of the server
        self.encoder_for = encoder_for
        #: job id -> its matcher slot; the slot's lock serialises building and matching
        self._matchers: dict[str, _MatcherSlot] = {}
        self._slots_lock = threading.Lock()

    def _table(self, src: TableSource | None, side: str, id_column: str) -> Table:
        if src is None:
            raise InvalidArgument(f"{side} table is required", field=side)
        given = [x for x in (src.path, src.rows, src.sql) if x]
        if len(given) != 1:
            raise InvalidArgument(f"{side} needs exactly one of path, inline or sql", field=side)
        id_column = src.id_column or id_column
        if src.rows is not None:
            return Table.from_records(src.rows, id_column=id_column, name=side)
        if src.sql:
            return self.sources.sql_table(
                src.sql, id_column=id_column, label=side, field=f"{side}.sql"
            )
        path = self.sources.path(str(src.path), f"{side}.path")
        return read_table(path, id_column=id_column, encoding=src.encoding, name=side)

    def start(
        self,
        kind: str,
        spec: Mapping[str, Any],
        left: TableSource | None,
        right: TableSource | None,
    ) -> str:
        """Validate everything, create the job and run it in the background."""
        spec = dict(spec)
        if kind not in ("link", "dedupe"):
            raise InvalidArgument("kind must be link or dedupe", field="kind")
        if kind == "dedupe" and right is not None:
            raise InvalidArgument("a dedupe job takes only the left table", field="right")
        # id columns named in the sources override the spec's
        if left is not None and left.id_column:
            spec.setdefault("left_id", left.id_column)
        if right is not None and right.id_column:
            spec.setdefault("right_id", right.id_column)
        problems: list[VeclinkError] = []
        tables: list[Table | None] = []
        for src, side, key in ((left, "left", "left_id"), (right, "right", "right_id")):
            if side == "right" and kind == "dedupe":
                tables.append(None)
                continue
            try:
                tables.append(
                    self._table(src, side, str(spec.get(key) or spec.get("left_id") or "id"))
                )
            except VeclinkError as exc:
                problems.append(exc)
                tables.append(None)
        if len(problems) == 1:  # keep its status (e.g. NOT_FOUND for a missing file)
            raise problems[0]
        if problems:
            raise InvalidArgument("; ".join(map(str, problems)), field="input")
        lt, rt = tables
        checked, lt, rt = prepare_inputs(spec, lt, rt)  # type: ignore[arg-type]
        job_id = self.store.create_job(
            kind,
            checked.to_dict(),
            left_source=left.describe() if left else "",
            right_source=right.describe() if right else "",
        )
        self.executor.submit(self._run, job_id, kind, checked, lt, rt)
        return job_id

    def _run(self, job_id: str, kind: str, spec: Any, left: Table, right: Table | None) -> None:
        last = [0.0]

        def progress(stage: str, fraction: float) -> None:
            now = time.monotonic()
            if now - last[0] > 0.2 or fraction >= 1.0:
                last[0] = now
                self.store.update_job(job_id, stage=stage, progress=min(max(fraction, 0.0), 1.0))

        try:
            self.store.update_job(job_id, state="running", stage="starting", progress=0.0)
            encoder = self.encoder_for(spec.encoder) if self.encoder_for else None
            arguments: dict[str, Any] = {"encoder": encoder}
            if self.job_arguments is not None:
                arguments = self.job_arguments(spec, encoder)
            if kind == "link":
                assert right is not None
                result = link(left, right, spec, progress=progress, **arguments)
            else:
                result = dedupe(left, spec, progress=progress, **arguments)
            matcher = result.matcher()
            parts = matcher_state(matcher).to_parts()
            if kind == "link":
                self.store.save_link_result(job_id, result, matcher=parts)
            else:
                self.store.save_dedupe_result(job_id, result, matcher=parts)
            slot = self._slot(job_id)
            with slot.lock:  # a Match may have rebuilt (and used) it from the store already
                if slot.matcher is None:
                    slot.matcher = matcher
        except Exception as exc:  # the job fails; the server goes on
            log.exception("linkage job %s failed", job_id)
            self.store.update_job(job_id, state="failed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Wait for running jobs to finish."""
        self.executor.shutdown(wait=True)

    def get(self, job_id: str) -> Job:
        return _job(self.store.get_job(job_id))

    def results(
        self, job_id: str, page_size: int, page_token: str
    ) -> tuple[JobInfo, list[tuple[str, str, float]], list[tuple[str, str]], str]:
        """A page of pairs (link) or entity assignments (dedupe), and the next page token."""
        job = self.store.get_job(job_id)
        if job.state != "succeeded":
            raise FailedPrecondition(
                f"job {job_id} is {job.state}; results exist once it has succeeded",
                field="job_id",
            )
        size = page_size or 1000
        if not 1 <= size <= MAX_PAGE:
            raise InvalidArgument(f"page_size must be in 1..{MAX_PAGE}", field="page_size")
        try:
            offset = int(page_token or 0)
        except ValueError:
            raise InvalidArgument(
                "page_token is not one this server issued", field="page_token"
            ) from None
        if job.kind == "link":
            pairs = self.store.pairs(job_id, offset=offset, limit=size)
            more = len(pairs) == size
            return job, pairs, [], str(offset + size) if more else ""
        ents = self.store.entities(job_id, offset=offset, limit=size)
        more = len(ents) == size
        return job, [], [(rid, ent) for _, rid, ent in ents], str(offset + size) if more else ""

    def match(self, job_id: str, record: Mapping[str, Any], k: int, assign: bool) -> MatchResult:
        """Match one record against a finished job; an assigned record is logged.

        Raises:
            NotFound: no such job.
            FailedPrecondition: the job has not succeeded, or its matcher cannot be rebuilt.
            InvalidArgument: a bad record or ``k`` (see `Matcher.match`).
        """
        slot = self._slot(job_id)
        with slot.lock:
            if slot.matcher is None:
                slot.matcher = self._rebuild(job_id)
            result = slot.matcher.match(record, k=k or 5, assign=assign)
            if assign:
                try:
                    self.store.log_match(job_id, result.record_id, record)
                except Exception:
                    # memory is ahead of the log: rebuild from what is stored next time
                    slot.matcher = None
                    raise
        return MatchResult(
            candidates=[
                EntityCandidate(entity_id=c.entity_id, record_id=c.record_id, score=c.score)
                for c in result.candidates
            ],
            assigned_entity_id=result.assigned_entity_id,
        )

    def _slot(self, job_id: str) -> _MatcherSlot:
        with self._slots_lock:
            slot = self._matchers.get(job_id)
        if slot is None:
            self.store.get_job(job_id)  # NotFound: no slot for a job that does not exist
            with self._slots_lock:
                slot = self._matchers.setdefault(job_id, _MatcherSlot())
        return slot

    def _rebuild(self, job_id: str) -> Matcher:
        """The job's matcher from its stored state, with the logged assignments replayed."""
        job = self.store.get_job(job_id)
        if job.state != "succeeded":
            raise FailedPrecondition(
                f"job {job_id} is {job.state}; Match needs a job that has succeeded",
                field="job_id",
            )
        parts = self.store.matcher_parts(job_id)
        if parts is None:
            raise FailedPrecondition(
                f"job {job_id} has no stored matcher (it finished before matchers were "
                "stored): run the job again to match against it",
                field="job_id",
            )
        try:
            state = MatcherState.from_parts(parts)
            spec = state.meta["model"]["spec"]
            encoder = self.encoder_for(spec["encoder"]) if self.encoder_for else None
            matcher = load_matcher(state, encoder=encoder)
            # the records earlier calls assigned, in order: the same claims as before
            for record_id, record in self.store.logged_matches(job_id):
                matcher.match(record, record_id=record_id, k=1, assign=True)
        except (VeclinkError, KeyError, TypeError, OSError) as exc:
            # a missing model directory, an unreadable or incompatible state: the job's
            # matcher is gone, which is the job's condition, not a client mistake
            raise FailedPrecondition(
                f"the matcher of job {job_id} cannot be rebuilt: {type(exc).__name__}: {exc}",
                field="job_id",
            ) from exc
        log.info("rebuilt the matcher of linkage job %s from the store", job_id)
        return matcher


def _job(info: JobInfo) -> Job:
    """What a client sees of a stored job."""
    return Job(
        job_id=info.job_id,
        kind=info.kind,
        state=info.state,
        stage=info.stage,
        progress=info.progress,
        error=info.error,
        metrics=info.metrics,
        created_at=info.created_at,
        finished_at=info.finished_at,
    )


@dataclasses.dataclass
class _MatcherSlot:
    """A job's matcher (None until built) and the lock that builds and uses it."""

    matcher: Matcher | None = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
