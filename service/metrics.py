"""Prometheus metrics: RPC counts by method and status code, and latency histograms."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

RPCS = Counter("veclink_rpcs_total", "RPCs handled", ["method", "code"])
LATENCY = Histogram(
    "veclink_rpc_seconds",
    "RPC latency",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


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
