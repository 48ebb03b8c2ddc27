"""Build and run the grpc.aio server: servicers, health checking, reflection, auth."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from veclink.encoders.batcher import BatchPolicy
from veclink.index import CheckpointPolicy
from veclink.service.auth import build_auth
from veclink.service.decoding import DecodeErrorInterceptor
from veclink.service.health import HealthServicer
from veclink.service.linkage_jobs import LinkageJobs
from veclink.service.logs import RequestIdInterceptor
from veclink.service.metrics import MetricsInterceptor, StoreCollector, instrument
from veclink.service.models import ModelRegistry
from veclink.service.probes import ProbeServer, Readiness
from veclink.service.servicers import (
    CollectionsServicer,
    EmbeddingsServicer,
    LinkageServicer,
    PointsServicer,
)
from veclink.service.settings import Settings
from veclink.service.sources import JobSources
from veclink.service.store import VectorStore
from veclink.service.tls import add_port
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

from veclink.errors import FailedPrecondition

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    embeddings_pb2.DESCRIPTOR.services_by_name["Embeddings"].full_name,
    collections_pb2.DESCRIPTOR.services_by_name["Collections"].full_name,
    points_pb2.DESCRIPTOR.services_by_name["Points"].full_name,
    linkage_pb2.DESCRIPTOR.services_by_name["Linkage"].full_name,
)


def cluster_warnings(settings: Settings) -> list[str]:
    """What an operator must hear about a cluster-mode configuration (empty: nothing)."""
    if not settings.cluster.ray_address:
        return []
    url = settings.storage.database_url
    if url and not url.startswith("sqlite"):
        return []
    return [
        "cluster mode with a SQLite catalog "
        f"({url or 'the default ' + settings.storage.data_dir + '/catalog.db'}): only this "
        "front-end can reach it, and it is lost with this node's disk. Use PostgreSQL "
        "(storage.database_url / --database-url) as the shared catalog in cluster mode."
    ]


def build_store(settings: Settings) -> VectorStore:
    """The store of ``settings``; in cluster mode (``[cluster] ray_address``) it connects to Ray."""
    cluster = None
    loader = None
    if settings.cluster.ray_address:
        from veclink.cluster.runtime import ClusterOptions, RayCluster  # Ray: cluster mode only

        for warning in cluster_warnings(settings):
            log.warning("%s", warning)
        cluster = RayCluster(
            ClusterOptions(
                ray_address=settings.cluster.ray_address,
                shard_cpus=settings.cluster.shard_cpus,
                local_cpus=settings.cluster.local_cpus,
                encoder_replicas=settings.cluster.encoder_replicas,
                encoder_cpus=settings.cluster.encoder_cpus,
                encoder_gpus=settings.cluster.encoder_gpus,
            )
        )
        if settings.cluster.encoder_replicas:
            loader = cluster.load_encoder
    enc = settings.encoding
    batching = (
        BatchPolicy(
            max_wait_s=enc.max_wait_ms / 1000.0,
            max_batch=enc.max_batch,
            batch_tokens=enc.batch_tokens,
        )
        if enc.batching
        else None
    )
    models = ModelRegistry(settings.models, settings.default_model, batching, loader=loader)
    return VectorStore(
        settings.storage.data_dir,
        models,
        database_url=settings.storage.database_url or None,
        default_index_kind=settings.storage.default_index_kind,
        limits=settings.limits,
        checkpoints=CheckpointPolicy(
            records=settings.storage.checkpoint_records,
            wal_bytes=settings.storage.checkpoint_wal_bytes,
            seconds=settings.storage.checkpoint_seconds,
        ),
        cluster=cluster,
    )


def bind_error(address: str) -> FailedPrecondition:
    """The error for an address gRPC could not bind, with the operating system's reason."""
    host, _, port = address.rpartition(":")
    reason = "the address is not available"
    try:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host.strip("[]"), int(port)))
    except OSError as exc:
        reason = "the address is in use" if exc.errno == errno.EADDRINUSE else str(exc)
    except ValueError:
        reason = "it is not a valid host:port"
    return FailedPrecondition(f"cannot listen on {address}: {reason}", field="server.port")


class Server:
    """A running veclink server. ``await Server.start(settings)``, then ``await stop()``."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        store: VectorStore,
        executor: ThreadPoolExecutor,
        health_servicer: health.aio.HealthServicer,
        jobs: LinkageJobs,
        checkpoints: asyncio.Task[None] | None = None,
    ) -> None:
        self.grpc_server = server
        self.port = port
        self.store = store
        self.executor = executor
        self.health = health_servicer
        self.jobs = jobs
        #: the HTTP /metrics, /healthz, /readyz server (None with server.metrics off)
        self.probes: ProbeServer | None = None
        self.checkpoints = checkpoints

    @classmethod
    async def start(
        cls,
        settings: Settings,
        store: VectorStore | None = None,
        prepare: Callable[[], object] | None = None,
    ) -> Server:
        """Bind, replay every collection's index, run ``prepare``, then report SERVING.

        The port is bound first, so a busy port fails at once (no SO_REUSEPORT: a second
        server never shares it); health says NOT_SERVING until the indexes are replayed.
        """
        limit_blas_threads(settings.server.blas_threads)
        store = store or build_store(settings)
        executor = ThreadPoolExecutor(settings.server.workers, thread_name_prefix="veclink")
        size = settings.server.max_message_bytes
        # outermost: a request id for every call, in every log line it causes
        interceptors: list[grpc.aio.ServerInterceptor] = [
            RequestIdInterceptor(),
            MetricsInterceptor(),
        ]
        auth = build_auth(settings.auth)
        if auth is not None:
            interceptors.append(auth)
        # innermost: undecodable requests answer INVALID_ARGUMENT, counted by the metrics
        interceptors.append(DecodeErrorInterceptor())
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                ("grpc.so_reuseport", 0),
            ],
        )
        embeddings_pb2_grpc.add_EmbeddingsServicer_to_server(
            EmbeddingsServicer(store, executor, settings.limits), server
        )
        collections_pb2_grpc.add_CollectionsServicer_to_server(
            CollectionsServicer(store, executor, settings.limits), server
        )
        points_pb2_grpc.add_PointsServicer_to_server(
            PointsServicer(store, executor, settings.limits), server
        )
        jobs = LinkageJobs(
            store.engine,
            encoder_for=store.models.batched,
            sources=JobSources(settings.sources),
            job_arguments=store.cluster.linkage_arguments if store.cluster else None,
        )
        linkage_pb2_grpc.add_LinkageServicer_to_server(
            LinkageServicer(jobs, executor, settings.limits), server
        )
        health_servicer = HealthServicer()
        # not ready (/readyz 503) until everything below has started
        await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{settings.server.host}:{settings.server.port}"
        try:
            port = add_port(server, address, settings.server.tls)
        except RuntimeError:  # grpcio >= 1.56 raises; older ones return 0
            port = 0
        if port == 0:
            executor.shutdown(wait=False)
            jobs.close()
            raise bind_error(address)
        await server.start()
        probes = None
        if settings.server.metrics:
            instrument(store)
            try:
                ready = Readiness(health_servicer, store.engine, asyncio.get_running_loop())
                probes = ProbeServer(
                    settings.server.host,
                    settings.server.metrics_port,
                    ready,
                    collectors=[StoreCollector(store, jobs)],
                )
            except OSError:
                await server.stop(0)
                raise
        for name in ("", *SERVICE_NAMES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

        def replay_and_prepare() -> None:
            began = time.monotonic()
            opened = store.open_all()
            seconds = time.monotonic() - began
            records = store.wal_records()  # 0 after a graceful stop: it checkpointed
            log.info("replayed %d collections in %.3f s (%d WAL records)", opened, seconds, records)
            if prepare is not None:
                prepare()

        await asyncio.get_running_loop().run_in_executor(executor, replay_and_prepare)
        for name in ("", *SERVICE_NAMES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("veclink serving on %s:%d", settings.server.host, port)
        every = settings.storage.checkpoint_seconds
        checkpoints = (
            asyncio.create_task(_checkpoint_loop(store, executor, max(1.0, min(every / 2, 30.0))))
            if every
            else None
        )
        running = cls(server, port, store, executor, health_servicer, jobs, checkpoints)
        running.probes = probes
        return running

    async def stop(self, grace: float = 5.0) -> None:
        """Stop gracefully: NOT_SERVING, drain, checkpoint, close.

        Health (gRPC and /readyz) turns NOT_SERVING first and health watchers are told; then
        the port takes no new call while in-flight calls get ``grace`` seconds to finish
        (those still running are cancelled; work already handed to the executor completes).
        Running linkage jobs are waited for, then every collection's index is snapshotted,
        so that the next start replays no WAL.
        """
        await self.health.enter_graceful_shutdown()
        if self.checkpoints is not None:
            self.checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.checkpoints
        began = time.monotonic()
        await self.grpc_server.stop(grace)
        log.info("drained in-flight calls in %.3f s", time.monotonic() - began)
        if self.probes is not None:
            self.probes.close()
        self.executor.shutdown(wait=True)
        self.jobs.close()
        closed = self.store.close()
        log.info("checkpointed and closed %d collections", closed)


async def _checkpoint_loop(store: VectorStore, executor: ThreadPoolExecutor, every: float) -> None:
    """Snapshot collections whose WAL is due although no write comes to trigger it."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        try:
            await loop.run_in_executor(executor, store.checkpoint_idle)
        except Exception:  # keep checking; the next write or tick tries again
            log.exception("periodic checkpoint failed")


async def serve_forever(
    settings: Settings,
    store: VectorStore | None = None,
    prepare: Callable[[], object] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM, then drain in-flight calls and close the store cleanly.

    ``prepare`` runs after the port is bound and before the server reports SERVING.
    """
    server = await Server.start(settings, store, prepare)
    stop = asyncio.Event()
    received: list[str] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    print(f"veclink listening on {settings.server.host}:{server.port}", flush=True)
    if server.probes is not None:
        host, port = settings.server.host, server.probes.port
        log.info("metrics, /healthz and /readyz on http://%s:%d", host, port)
    await stop.wait()
    grace = settings.server.grace_seconds
    log.info("%s: shutting down (NOT_SERVING, drain up to %.1f s, checkpoint)", received[0], grace)
    await server.stop(grace)
    log.info("stopped")


def limit_blas_threads(n: int) -> None:
    """Cap numpy's and faiss's BLAS threads for the whole process (0: leave them be)."""
    if not n:
        return
    try:  # threadpoolctl comes with scikit-learn, a core dependency
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(n, user_api="blas")
