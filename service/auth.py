"""API-key authentication: read-only and read-write keys; health and reflection stay open."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from veclink.service.settings import AuthSettings

#: RPCs that change stored data (need a write key)
WRITE_METHODS = frozenset(
    {
        "/veclink.v1.Collections/CreateCollection",
        "/veclink.v1.Collections/DeleteCollection",
        "/veclink.v1.Points/Upsert",
        "/veclink.v1.Points/UpsertStream",
        "/veclink.v1.Points/Delete",
        "/veclink.v1.Linkage/StartJob",
        "/veclink.v1.Linkage/Match",
    }
)
OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _deny(code: grpc.StatusCode, message: str, streaming_request: bool) -> grpc.RpcMethodHandler:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    async def stream(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    if streaming_request:
        return grpc.stream_unary_rpc_method_handler(stream)
    return grpc.unary_unary_rpc_method_handler(unary)


def key_from_metadata(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "x-api-key":
            return str(value)
        if key == "authorization" and str(value).lower().startswith("bearer "):
            return str(value)[7:]
    return None


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Checks ``x-api-key`` (or ``authorization: Bearer KEY``) against the configured keys."""

    def __init__(self, settings: AuthSettings) -> None:
        self.read = frozenset(settings.read_keys)
        self.write = frozenset(settings.write_keys)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        if method.startswith(OPEN_PREFIXES):
            return await continuation(details)
        key = key_from_metadata(details.invocation_metadata)
        streaming = method == "/veclink.v1.Points/UpsertStream"
        if key is None:
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "missing API key (x-api-key)", streaming)
        if key not in self.read and key not in self.write:
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "unknown API key", streaming)
        if method in WRITE_METHODS and key not in self.write:
            return _deny(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this API key is read-only; {method.rsplit('/', 1)[-1]} needs a write key",
                streaming,
            )
        return await continuation(details)
