"""Linkage: specs (typed), table sources, jobs, results pages and matches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from veclink.errors import InvalidArgument
from veclink.v1 import linkage_pb2
from veclink.wire.convert.common import EnumNames
from veclink.wire.options import dict_to_message, message_to_dict
from veclink.wire.types import (
    EntityAssignment,
    EntityCandidate,
    Job,
    MatchedPair,
    MatchResult,
    NewJob,
    TableSource,
)
from veclink.wire.values import from_object, to_object

JOB_KIND = EnumNames(
    "kind", {"link": linkage_pb2.JOB_KIND_LINK, "dedupe": linkage_pb2.JOB_KIND_DEDUPE}
)
JOB_STATE = EnumNames(
    "state",
    {
        "queued": linkage_pb2.JOB_STATE_QUEUED,
        "running": linkage_pb2.JOB_STATE_RUNNING,
        "succeeded": linkage_pb2.JOB_STATE_SUCCEEDED,
        "failed": linkage_pb2.JOB_STATE_FAILED,
        "cancelled": linkage_pb2.JOB_STATE_CANCELLED,
    },
)


def spec_to_proto(spec: Mapping[str, Any] | None) -> linkage_pb2.LinkageSpec:
    """A linkage spec dict as the typed message; every wrong key or type is reported."""
    return dict_to_message(spec, linkage_pb2.LinkageSpec, "linkage spec", "spec")  # type: ignore[return-value]


def spec_from_proto(spec: linkage_pb2.LinkageSpec) -> dict[str, Any]:
    """The fields set in a spec message (the server fills in the defaults)."""
    return message_to_dict(spec)


def table_source_to_proto(src: TableSource, side: str) -> linkage_pb2.TableSource:
    given = [name for name in ("path", "rows", "sql") if getattr(src, name) is not None]
    if len(given) != 1:
        raise InvalidArgument(f"{side} needs exactly one of path, rows or sql", field=side)
    out = linkage_pb2.TableSource(id_column=src.id_column, encoding=src.encoding or "")
    if src.path is not None:
        out.path = src.path
    elif src.sql is not None:
        out.sql = src.sql
    else:
        out.inline.SetInParent()
        out.inline.rows.extend(
            to_object(row, f"{side}.rows[{i}]") for i, row in enumerate(src.rows or [])
        )
    return out


def table_source_from_proto(src: linkage_pb2.TableSource) -> TableSource | None:
    which = src.WhichOneof("source")
    if which is None:
        return None
    return TableSource(
        path=src.path if which == "path" else None,
        rows=[from_object(r) for r in src.inline.rows] if which == "inline" else None,
        sql=src.sql if which == "sql" else None,
        id_column=src.id_column,
        encoding=src.encoding or None,
    )


def new_job_to_proto(job: NewJob) -> linkage_pb2.StartJobRequest:
    req = linkage_pb2.StartJobRequest(
        kind=JOB_KIND.to_proto(job.kind), spec=spec_to_proto(job.spec)
    )
    if job.left is not None:
        req.left.CopyFrom(table_source_to_proto(job.left, "left"))
    if job.right is not None:
        req.right.CopyFrom(table_source_to_proto(job.right, "right"))
    return req


def new_job_from_proto(req: linkage_pb2.StartJobRequest) -> NewJob:
    return NewJob(
        kind=JOB_KIND.from_proto(req.kind),  # type: ignore[arg-type]
        left=table_source_from_proto(req.left),
        right=table_source_from_proto(req.right) if req.HasField("right") else None,
        spec=spec_from_proto(req.spec),
    )


def job_to_proto(job: Job) -> linkage_pb2.Job:
    msg = linkage_pb2.Job(
        job_id=job.job_id,
        kind=JOB_KIND.numbers.get(job.kind, linkage_pb2.JOB_KIND_UNSPECIFIED),
        state=JOB_STATE.numbers.get(job.state, linkage_pb2.JOB_STATE_UNSPECIFIED),
        stage=job.stage,
        progress=job.progress,
        error=job.error,
        metrics=to_object(job.metrics, "metrics"),
    )
    if job.created_at is not None:
        msg.created_at.FromDatetime(job.created_at)
    if job.finished_at is not None:
        msg.finished_at.FromDatetime(job.finished_at)
    return msg


def job_from_proto(job: linkage_pb2.Job) -> Job:
    return Job(
        job_id=job.job_id,
        kind=JOB_KIND.names.get(job.kind, ""),
        state=JOB_STATE.names.get(job.state, ""),
        stage=job.stage,
        progress=job.progress,
        error=job.error,
        metrics=from_object(job.metrics),
        created_at=job.created_at.ToDatetime() if job.HasField("created_at") else None,
        finished_at=job.finished_at.ToDatetime() if job.HasField("finished_at") else None,
    )


def results_to_proto(
    pairs: Sequence[tuple[str, str, float]],
    entities: Sequence[tuple[str, str]],
    next_page_token: str,
) -> linkage_pb2.GetResultsResponse:
    return linkage_pb2.GetResultsResponse(
        pairs=[linkage_pb2.MatchedPair(left_id=a, right_id=b, score=s) for a, b, s in pairs],
        entities=[linkage_pb2.EntityAssignment(id=i, entity_id=e) for i, e in entities],
        next_page_token=next_page_token,
    )


def results_from_proto(
    resp: linkage_pb2.GetResultsResponse,
) -> tuple[list[MatchedPair], list[EntityAssignment], str]:
    """One page: its pairs, its entity assignments and the next page's token ("" at the end)."""
    pairs = [MatchedPair(p.left_id, p.right_id, p.score) for p in resp.pairs]
    entities = [EntityAssignment(e.id, e.entity_id) for e in resp.entities]
    return pairs, entities, resp.next_page_token


def match_request_to_proto(
    job_id: str, record: Mapping[str, Any], k: int, assign: bool
) -> linkage_pb2.MatchRequest:
    return linkage_pb2.MatchRequest(
        job_id=job_id, record=to_object(record, "record"), k=k, assign=assign
    )


def match_record_from_proto(req: linkage_pb2.MatchRequest) -> dict[str, Any]:
    return from_object(req.record)


def match_to_proto(result: MatchResult) -> linkage_pb2.MatchResponse:
    return linkage_pb2.MatchResponse(
        candidates=[
            linkage_pb2.EntityCandidate(entity_id=c.entity_id, record_id=c.record_id, score=c.score)
            for c in result.candidates
        ],
        assigned_entity_id=result.assigned_entity_id or "",
    )


def match_from_proto(resp: linkage_pb2.MatchResponse) -> MatchResult:
    return MatchResult(
        candidates=[
            EntityCandidate(entity_id=c.entity_id, record_id=c.record_id, score=c.score)
            for c in resp.candidates
        ],
        assigned_entity_id=resp.assigned_entity_id or None,
    )
