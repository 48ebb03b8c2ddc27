"""Structured logs: one JSON object a line, carrying the request id of the RPC that logged.

Every RPC gets a request id: the client's ``x-request-id`` metadata when it is short and
printable (so a caller can follow its own id through the log), a generated one otherwise.
`RequestIdInterceptor` keeps it (and the method) in context variables for the duration of
the call, which `JsonFormatter` adds to every line logged meanwhile, including from the
executor threads the servicers hand work to (they run it in a copy of the call's context),
and sends it back to the client as trailing metadata ``x-request-id``, on errors too.

A line looks like::

    {"time": "2025-01-01T12:00:00.123Z", "level": "INFO", "logger": "veclink.service.servicers",
     "message": "Upsert: INVALID_ARGUMENT (records[0].id): ...", "request_id": "3f2a...",
     "method": "/veclink.v1.Points/Upsert"}

with ``exc`` (the formatted traceback, as one string) when an exception is logged.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from veclink.errors import InvalidArgument

#: one DEBUG line per finished RPC: method, status code, milliseconds
rpc_log = logging.getLogger("veclink.rpc")

#: the metadata key a client may send its own request id in, and the server answers with
REQUEST_ID_KEY = "x-request-id"
#: a client's id is kept only if it is 1-128 visible ASCII characters (no spaces, no control
#: characters): it goes into every log line and back to the client verbatim
_ACCEPTABLE_ID = re.compile(r"[\x21-\x7e]{1,128}")

#: the request id of the RPC being handled (None outside one)
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "veclink_request_id", default=None
)
#: the full method name of the RPC being handled (None outside one)
METHOD: contextvars.ContextVar[str | None] = contextvars.ContextVar("veclink_method", default=None)

#: the values ``VECLINK_LOG_FORMAT`` takes
LOG_FORMATS = ("json", "text")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s"


def request_id_from(metadata: Any) -> str:
    """The client's ``x-request-id`` if it is acceptable, else a new random id (32 hex)."""
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and _ACCEPTABLE_ID.fullmatch(value):
            return value
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time, level, logger, message, request_id,
    method, exc. Whatever the message holds (quotes, newlines), the line is valid JSON."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception as exc:  # a bad format string must not lose the line
            message = f"{record.msg!r} % {record.args!r} ({type(exc).__name__})"
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
            entry["method"] = METHOD.get()
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    """The human format: the request id in brackets after the logger's name."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = REQUEST_ID.get()
        record.request = f" [{request_id}]" if request_id else ""
        return super().format(record)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send every log record (and Python warnings) to stderr, as JSON lines or as text.

    Args:
        level: a logging level name (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``).
        fmt: ``json`` (one object a line) or ``text`` (for people reading a terminal).

    Raises:
        InvalidArgument: an unknown level or format, naming the environment variable.
    """
    name = level.strip().upper()
    if not isinstance(logging.getLevelNamesMapping().get(name), int):
        raise InvalidArgument(
            f"VECLINK_LOG_LEVEL: unknown level {level[:40]!r}; use DEBUG, INFO, WARNING or ERROR",
            field="VECLINK_LOG_LEVEL",
        )
    if fmt not in LOG_FORMATS:
        raise InvalidArgument(
            f"VECLINK_LOG_FORMAT: unknown format {fmt[:40]!r}; use one of {', '.join(LOG_FORMATS)}",
            field="VECLINK_LOG_FORMAT",
        )
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else _TextFormatter(_TEXT_FORMAT))
    logging.basicConfig(level=name, handlers=[handler], force=True)
    logging.captureWarnings(True)


def _code(context: grpc.aio.ServicerContext, ending: str) -> str:
    """The status an RPC ended with: the one set on its context, else how it ``ending``."""
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else ending


class RequestIdInterceptor(grpc.aio.ServerInterceptor):
    """Gives every RPC a request id: in the log context, and back to the client.

    Install it first (outermost), so that what the other interceptors log carries the id.
    Each finished RPC is logged at DEBUG with its status code and duration.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        request_id = request_id_from(details.invocation_metadata)

        def begin(context: grpc.aio.ServicerContext) -> float:
            # each RPC runs in its own asyncio task (its own context): no reset is needed
            REQUEST_ID.set(request_id)
            METHOD.set(method)
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            return time.perf_counter()

        def end(context: grpc.aio.ServicerContext, start: float, ending: str) -> None:
            if rpc_log.isEnabledFor(logging.DEBUG):
                ms = 1000 * (time.perf_counter() - start)
                rpc_log.debug("%s %s in %.1f ms", method, _code(context, ending), ms)

        kinds = (
            ("unary_unary", grpc.unary_unary_rpc_method_handler),
            ("unary_stream", grpc.unary_stream_rpc_method_handler),
            ("stream_unary", grpc.stream_unary_rpc_method_handler),
            ("stream_stream", grpc.stream_stream_rpc_method_handler),
        )
        for attr, factory in kinds:
            inner = getattr(handler, attr)
            if inner is not None:
                return factory(
                    _observe(inner, begin, end),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler


def _observe(
    inner: Callable[..., Any],
    begin: Callable[[Any], float],
    end: Callable[[Any, float, str], None],
) -> Any:
    """``inner`` with ``begin`` before it and ``end`` after it, keeping its shape: an async
    generator stays one, anything else is awaited."""
    if inspect.isasyncgenfunction(inner):

        async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
            start = begin(context)
            ending = "UNKNOWN"
            try:
                async for response in inner(request, context):
                    yield response
                ending = "OK"
            except asyncio.CancelledError:  # the client went away, or the drain ran out
                ending = "CANCELLED"
                raise
            finally:
                end(context, start, ending)

        return generator

    async def coroutine(request: Any, context: Any) -> Any:
        start = begin(context)
        ending = "UNKNOWN"
        try:
            result = inner(request, context)
            result = await result if inspect.isawaitable(result) else result
            ending = "OK"
            return result
        except asyncio.CancelledError:
            ending = "CANCELLED"
            raise
        finally:
            end(context, start, ending)

    return coroutine
