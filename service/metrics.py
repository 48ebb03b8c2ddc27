"""Prometheus metrics of the server (every one is listed in the README's operations section).

Two kinds:

- Process-wide counters and histograms in the default registry, observed as work happens:
  RPCs by method and code and their latency (`MetricsInterceptor`), encodes by model and
  index searches by index kind (the store's ``on_encode`` / ``on_search`` hooks), and WAL
  fsyncs (the index WAL's observer); `instrument` connects the hooks.
- Gauges read at scrape time by `StoreCollector` from one server's store and job table:
  records, vectors and WAL size per collection, linkage jobs by kind and state. Their
  collection label is bounded by the collections that exist; each server's probe port
  serves its own collector (see `veclink.service.probes`), so nothing is registered
  globally per server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from veclink.index.wal import observe_fsyncs

if TYPE_CHECKING:
    from veclink.service.linkage_jobs import LinkageJobs
    from veclink.service.store import VectorStore

log = logging.getLogger(__name__)

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: index searches and fsyncs take from tens of microseconds to a second
_FAST_SECONDS = (0.0001, 0.00025, 0.0005, *_SECONDS[:11])

RPCS = Counter("veclink_rpcs_total", "RPCs handled", ["method", "code"])
LATENCY = Histogram("veclink_rpc_seconds", "RPC latency", ["method"], buckets=_SECONDS)
ENCODE = Histogram(
    "veclink_encode_seconds",
    "Time to encode one batch of texts or images with a served model",
    ["model"],
    buckets=_SECONDS,
)
ENCODED = Counter("veclink_encoded_inputs_total", "Texts and images encoded", ["model"])
SEARCH = Histogram(
    "veclink_search_seconds",
    "Time of one vector index search (without query encoding and catalog lookups)",
    ["index_kind"],
    buckets=_FAST_SECONDS,
)
WAL_FSYNC = Histogram(
    "veclink_wal_fsync_seconds",
    "Time of one fsync of an index write-ahead log segment",
    buckets=_FAST_SECONDS,
)


def _encoded(model: str, inputs: int, seconds: float) -> None:
    ENCODE.labels(model).observe(seconds)
    ENCODED.labels(model).inc(inputs)


def _searched(index_kind: str, seconds: float) -> None:
    SEARCH.labels(index_kind).observe(seconds)


def instrument(store: VectorStore) -> None:
    """Observe ``store``'s encodes and searches, and every WAL fsync of this process."""
    store.on_encode = _encoded
    store.on_search = _searched
    observe_fsyncs(WAL_FSYNC.observe)


class StoreCollector(Collector):
    """Gauges read at scrape time: per collection from the store, jobs from the catalog.

    The collection gauges cost no SQL (the store keeps its counts); the job gauge is one
    ``GROUP BY`` over the jobs table. A catalog that does not answer leaves the job gauge
    out of that scrape rather than failing it.
    """

    def __init__(self, store: VectorStore, jobs: LinkageJobs | None = None) -> None:
        self.store = store
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        records = GaugeMetricFamily(
            "veclink_collection_records", "Records in a collection", labels=["collection"]
        )
        vectors = GaugeMetricFamily(
            "veclink_collection_vectors",
            "Live vectors in a collection's index",
            labels=["collection", "index_kind"],
        )
        wal_bytes = GaugeMetricFamily(
            "veclink_wal_bytes",
            "Bytes of a collection's index write-ahead log on disk",
            labels=["collection"],
        )
        wal_records = GaugeMetricFamily(
            "veclink_wal_records",
            "Write-ahead log records no snapshot covers (what a restart replays)",
            labels=["collection"],
        )
        for usage in self.store.collection_usage():
            records.add_metric([usage.name], usage.records)
            vectors.add_metric([usage.name, usage.index_kind], usage.vectors)
            wal_bytes.add_metric([usage.name], usage.wal_bytes)
            wal_records.add_metric([usage.name], usage.wal_records)
        yield from (records, vectors, wal_bytes, wal_records)
        if self.jobs is None:
            return
        try:
            counts = self.jobs.store.job_counts()
        except SQLAlchemyError as exc:
            log.warning("metrics: linkage job counts unavailable (%s)", type(exc).__name__)
            return
        jobs = GaugeMetricFamily(
            "veclink_linkage_jobs", "Linkage jobs by kind and state", labels=["kind", "state"]
        )
        for (kind, state), n in sorted(counts.items()):
            jobs.add_metric([kind, state], n)
        yield jobs


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times unary-response RPCs (all of veclink's but WatchJob)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.response_streaming:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        inner = handler.stream_unary if handler.request_streaming else handler.unary_unary

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)
            except BaseException:
                status = context.code()
                code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                RPCS.labels(method, code).inc()
                LATENCY.labels(method).observe(time.perf_counter() - start)

        factory = (
            grpc.stream_unary_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        return factory(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
