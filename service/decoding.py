"""Undecodable request messages get INVALID_ARGUMENT, on every method and stream.

grpc deserializes a request inside the server, before any handler runs; a deserializer
that raises makes grpc answer UNKNOWN (INTERNAL on some streams). This interceptor gives
every method handler a deserializer that never raises: it returns an `Undecodable` marker
instead, and the wrapped behaviour aborts with INVALID_ARGUMENT when it meets one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

log = logging.getLogger(__name__)


class Undecodable:
    """Stands in for a request message whose bytes did not parse."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _safe(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, or RecursionError from deep nesting
            return Undecodable(exc)

    return deserialize


async def _reject(context: grpc.aio.ServicerContext, method: str, bad: Undecodable) -> None:
    log.info("%s: undecodable request (%s)", method, type(bad.error).__name__)
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request is not a valid {method.rsplit('/', 1)[-1]} request message "
        f"({type(bad.error).__name__})",
    )


class DecodeErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns request decoding errors into INVALID_ARGUMENT before the handler runs."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = details.method

        async def one(request: Any, context: Any) -> Any:
            if isinstance(request, Undecodable):
                await _reject(context, method, request)
            return request

        async def each(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            async for request in requests:
                yield await one(request, context)

        async def many(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            return each(requests, context)

        kinds = (
            ("unary_unary", grpc.unary_unary_rpc_method_handler, one),
            ("unary_stream", grpc.unary_stream_rpc_method_handler, one),
            ("stream_unary", grpc.stream_unary_rpc_method_handler, many),
            ("stream_stream", grpc.stream_stream_rpc_method_handler, many),
        )
        for attr, factory, prepare in kinds:
            inner = getattr(handler, attr)
            if inner is not None:
                return factory(
                    _wrap(inner, prepare),
                    request_deserializer=_safe(handler.request_deserializer),
                    response_serializer=handler.response_serializer,
                )
        return handler


def _wrap(inner: Callable[..., Any], prepare: Callable[..., Awaitable[Any]]) -> Any:
    """``inner`` called with its request (or request stream) passed through ``prepare``,
    keeping its shape: an async generator stays one, anything else is awaited."""
    if inspect.isasyncgenfunction(inner):

        async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
            async for response in inner(await prepare(request, context), context):
                yield response

        return generator

    async def coroutine(request: Any, context: Any) -> Any:
        result = inner(await prepare(request, context), context)
        return await result if inspect.isawaitable(result) else result

    return coroutine
