"""gRPC servicers. Each RPC converts its request, runs the store off the event loop and
converts back; domain errors become precise status codes in one place (``_rpc``)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc
from veclink.service.linkage_jobs import FINAL_STATES, LinkageJobs
from veclink.service.settings import LimitSettings
from veclink.service.store import VectorStore
from veclink.service.validate import RequestValidator
from veclink.v1 import (
    collections_pb2,
    collections_pb2_grpc,
    embeddings_pb2,
    embeddings_pb2_grpc,
    linkage_pb2,
    linkage_pb2_grpc,
    points_pb2,
    points_pb2_grpc,
)

from veclink.errors import (
    AlreadyExists,
    ClusterUnavailable,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    MissingDependency,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    VeclinkError,
)
from veclink.wire import ModelInfo, convert
from veclink.wire.types import quote

log = logging.getLogger(__name__)

STATUS = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    MissingDependency: grpc.StatusCode.FAILED_PRECONDITION,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    ClusterUnavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
#: longest status message sent: a reply must never fail for its own size
MAX_MESSAGE_CHARS = 1_000


def status_of(exc: VeclinkError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.INTERNAL


async def abort_with(context: grpc.aio.ServicerContext, method: str, exc: VeclinkError) -> None:
    """Answer a domain error: its status code and a bounded message, logged as one line."""
    code = status_of(exc)
    message = str(exc)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    log.info("%s: %s (%s): %s", method, code.name, exc.field or "-", message[:200])
    await context.abort(code, message)


def _rpc(fn: F) -> F:
    """Map domain errors to status codes; anything else is logged and reported INTERNAL."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except VeclinkError as exc:
            await abort_with(context, fn.__name__, exc)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("%s failed", fn.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{fn.__name__} failed; see server log")

    return wrapper  # type: ignore[return-value]


async def run_in_context(
    executor: Executor, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """``fn(*args, **kwargs)`` in ``executor``, in a copy of the caller's context, so that
    what it logs carries the request id of the RPC it works for."""
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor, call)


class _Base:
    def __init__(
        self, store: VectorStore, executor: Executor, limits: LimitSettings | None = None
    ) -> None:
        self.store = store
        self.executor = executor
        self.check = RequestValidator(limits or LimitSettings())

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_context(self.executor, fn, *args, **kwargs)


class EmbeddingsServicer(_Base, embeddings_pb2_grpc.EmbeddingsServicer):
    @_rpc
    async def Embed(self, request: embeddings_pb2.EmbedRequest, context: Any) -> Any:
        self.check.embed(request)
        query = convert.embed_from_proto(request)
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        start = functools.partial(
            self.store.embed_start,
            query.model,
            list(query.inputs),
            role=query.role,
            normalize=query.normalize,
            dimensions=query.dimensions,
            instruction=query.instruction,
            precision=query.precision,
            deadline=deadline,
        )
        # Texts to a loaded model are checked and queued right here (no thread hop for the
        # common short request); a model's first load, images and instruction variants
        # (encoded where they are started) go to the executor.
        inline = (
            not query.instruction
            and all(isinstance(x, str) for x in query.inputs)
            and self.store.models.loaded(query.model)
        )
        job = start() if inline else await self.run(start)
        if job.ticket is not None:
            try:
                job.vectors = await asyncio.wrap_future(job.ticket.future)
            except asyncio.CancelledError:
                job.ticket.cancel()  # dropped unencoded if its batch has not run yet
                raise
        return convert.embeddings_to_proto(job.finish())

    @_rpc
    async def ListModels(self, request: embeddings_pb2.ListModelsRequest, context: Any) -> Any:
        models = self.store.models

        def describe() -> list[Any]:
            out = []
            for name in models.names():
                enc = models.get(name)
                info = ModelInfo(
                    name=name,
                    dimensions=enc.dim,
                    modality=enc.modality,
                    spec=models.spec(name).to_dict(),
                    is_default=name == models.default,
                )
                out.append(convert.model_info_to_proto(info))
            return out

        return embeddings_pb2.ListModelsResponse(models=await self.run(describe))


class CollectionsServicer(_Base, collections_pb2_grpc.CollectionsServicer):
    @_rpc
    async def CreateCollection(self, request: Any, context: Any) -> Any:
        self.check.create_collection(request)
        new = convert.new_collection_from_proto(request)
        info = await self.run(
            self.store.create_collection,
            new.name,
            model=new.model,
            dim=new.dim,
            metric=new.metric,
            index_kind=new.index_kind,
            index_options=new.index_options,
            shards=new.shards,
        )
        return collections_pb2.CreateCollectionResponse(
            collection=convert.collection_to_proto(info)
        )

    @_rpc
    async def GetCollection(self, request: Any, context: Any) -> Any:
        self.check.collection(request.name, "name")
        info = await self.run(self.store.get_collection, request.name)
        return collections_pb2.GetCollectionResponse(collection=convert.collection_to_proto(info))

    @_rpc
    async def ListCollections(self, request: Any, context: Any) -> Any:
        infos = await self.run(self.store.list_collections)
        return collections_pb2.ListCollectionsResponse(
            collections=[convert.collection_to_proto(i) for i in infos]
        )

    @_rpc
    async def DeleteCollection(self, request: Any, context: Any) -> Any:
        self.check.collection(request.name, "name")
        await self.run(self.store.delete_collection, request.name)
        return collections_pb2.DeleteCollectionResponse(deleted=True)


class PointsServicer(_Base, points_pb2_grpc.PointsServicer):
    async def _upsert(self, request: points_pb2.UpsertRequest) -> tuple[int, int]:
        self.check.upsert(request)
        records = [convert.record_from_proto(r) for r in request.records]
        return await self.run(self.store.upsert, request.collection, records)  # type: ignore[no-any-return]

    @_rpc
    async def Upsert(self, request: points_pb2.UpsertRequest, context: Any) -> Any:
        upserted, created = await self._upsert(request)
        return points_pb2.UpsertResponse(upserted=upserted, created=created)

    async def UpsertStream(
        self, request_iterator: AsyncIterator[points_pb2.UpsertRequest], context: Any
    ) -> Any:
        total = created = 0
        collection = None
        batch = 0
        try:
            async for request in request_iterator:
                if collection is None:
                    collection = request.collection
                elif request.collection and request.collection != collection:
                    raise InvalidArgument(
                        f"message {batch} names collection {quote(request.collection)}; this "
                        f"stream writes to {quote(collection)}",
                        field="collection",
                    )
                request.collection = collection
                try:
                    n, c = await self._upsert(request)
                except VeclinkError as exc:
                    # name the failing batch; earlier batches are acknowledged and stay
                    exc.message = f"batch {batch} (after {total} records stored): {exc.message}"
                    raise
                total += n
                created += c
                batch += 1
        except VeclinkError as exc:
            await abort_with(context, "UpsertStream", exc)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("UpsertStream failed")
            await context.abort(grpc.StatusCode.INTERNAL, "UpsertStream failed; see server log")
        return points_pb2.UpsertResponse(upserted=total, created=created)

    @_rpc
    async def Delete(self, request: points_pb2.DeleteRequest, context: Any) -> Any:
        self.check.delete(request)
        n = await self.run(self.store.delete, request.collection, list(request.ids))
        return points_pb2.DeleteResponse(deleted=n)

    @_rpc
    async def Get(self, request: points_pb2.GetRequest, context: Any) -> Any:
        self.check.get(request)
        records, missing = await self.run(
            self.store.get, request.collection, list(request.ids), request.with_vectors
        )
        return points_pb2.GetResponse(
            records=[convert.stored_record_to_proto(r) for r in records], missing=missing
        )

    @_rpc
    async def Search(self, request: points_pb2.SearchRequest, context: Any) -> Any:
        self.check.search(request)
        hits = await self.run(self.store.search, convert.search_from_proto(request))
        return points_pb2.SearchResponse(hits=[convert.hit_to_proto(h) for h in hits])


class LinkageServicer(linkage_pb2_grpc.LinkageServicer):
    """Linkage jobs: start in the background, watch, page results, match one record."""

    def __init__(
        self, jobs: LinkageJobs, executor: Executor, limits: LimitSettings | None = None
    ) -> None:
        self.jobs = jobs
        self.executor = executor
        self.check = RequestValidator(limits or LimitSettings())

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_context(self.executor, fn, *args, **kwargs)

    @_rpc
    async def StartJob(self, request: linkage_pb2.StartJobRequest, context: Any) -> Any:
        self.check.start_job(request)
        new = convert.new_job_from_proto(request)
        job_id = await self.run(self.jobs.start, new.kind, new.spec, new.left, new.right)
        return linkage_pb2.StartJobResponse(job_id=job_id)

    @_rpc
    async def GetJob(self, request: linkage_pb2.GetJobRequest, context: Any) -> Any:
        self.check.job_id(request.job_id)
        job = await self.run(self.jobs.get, request.job_id)
        return linkage_pb2.GetJobResponse(job=convert.job_to_proto(job))

    async def WatchJob(self, request: linkage_pb2.WatchJobRequest, context: Any) -> Any:
        """Stream the job whenever its stage, progress or state changes, until it ends."""
        last = None
        try:
            self.check.job_id(request.job_id)
            while True:
                job = await self.run(self.jobs.get, request.job_id)
                seen = (job.state, job.stage, round(job.progress, 3))
                if seen != last:
                    last = seen
                    yield linkage_pb2.JobProgress(job=convert.job_to_proto(job))
                if job.state in FINAL_STATES:
                    return
                await asyncio.sleep(0.2)
        except VeclinkError as exc:
            await abort_with(context, "WatchJob", exc)

    @_rpc
    async def GetResults(self, request: linkage_pb2.GetResultsRequest, context: Any) -> Any:
        self.check.get_results(request)
        _, pairs, entities, token = await self.run(
            self.jobs.results, request.job_id, request.page_size, request.page_token
        )
        return convert.results_to_proto(pairs, entities, token)

    @_rpc
    async def Match(self, request: linkage_pb2.MatchRequest, context: Any) -> Any:
        self.check.match(request)
        result = await self.run(
            self.jobs.match,
            request.job_id,
            convert.match_record_from_proto(request),
            request.k,
            request.assign,
        )
        return convert.match_to_proto(result)
