"""API-key authentication: read-only and read-write keys; health and reflection stay open.

Keys come from the settings (``auth.read_keys`` / ``auth.write_keys``, or the environment
``VECLINK__AUTH__WRITE_KEYS``) and from files (``auth.read_keys_file`` /
``auth.write_keys_file``: one key a line, ``#`` comments). No key is ever logged or put in
an error message.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from veclink.service.settings import AuthSettings

from veclink.errors import InvalidArgument

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


def keys_from_file(path: str, field: str) -> tuple[str, ...]:
    """The keys in a key file: one a line; blank lines and ``#`` comments skipped.

    Raises:
        InvalidArgument: the file cannot be read, or holds no key (which would otherwise
            switch authentication off without a word).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{field}: cannot read {path}: {exc}", field=field) from exc
    keys = tuple(k for k in (line.split("#", 1)[0].strip() for line in text.splitlines()) if k)
    if not keys:
        raise InvalidArgument(f"{field}: {path} holds no key", field=field)
    return keys


def load_keys(settings: AuthSettings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Read keys and write keys, from the settings and the key files they name."""
    read = tuple(settings.read_keys)
    write = tuple(settings.write_keys)
    if settings.read_keys_file:
        read += keys_from_file(settings.read_keys_file, "auth.read_keys_file")
    if settings.write_keys_file:
        write += keys_from_file(settings.write_keys_file, "auth.write_keys_file")
    return read, write


def _known(key: str, keys: tuple[str, ...]) -> bool:
    # compare against every key in constant time: no timing hint about a key's prefix
    given = key.encode()
    return any([hmac.compare_digest(given, k.encode()) for k in keys])


def build_auth(settings: AuthSettings) -> ApiKeyInterceptor | None:
    """The interceptor that checks API keys; None when no key is configured anywhere."""
    read, write = load_keys(settings)
    return ApiKeyInterceptor(read, write) if read or write else None


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Checks ``x-api-key`` (or ``authorization: Bearer KEY``) against the configured keys."""

    def __init__(self, read_keys: tuple[str, ...], write_keys: tuple[str, ...]) -> None:
        self.read = read_keys
        self.write = write_keys

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
        can_write = _known(key, self.write)
        if not can_write and not _known(key, self.read):
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "unknown API key", streaming)
        if method in WRITE_METHODS and not can_write:
            return _deny(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this API key is read-only; {method.rsplit('/', 1)[-1]} needs a write key",
                streaming,
            )
        return await continuation(details)
