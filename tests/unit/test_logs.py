"""JSON log lines: valid JSON whatever the message, with the request id of the RPC."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from veclink.service.logs import (
    METHOD,
    REQUEST_ID,
    JsonFormatter,
    _TextFormatter,
    configure_logging,
    request_id_from,
)
from veclink.service.servicers import run_in_context

from veclink.errors import InvalidArgument


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose lines go through `JsonFormatter` into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("veclink.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def _in_rpc(request_id: str, method: str, fn: Any) -> Any:
    def call() -> Any:
        REQUEST_ID.set(request_id)
        METHOD.set(method)
        return fn()

    return contextvars.copy_context().run(call)


def test_every_message_is_one_valid_json_line(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = logged
    nasty = 'a "quoted" name\nsecond line\ttab \\ backslash {"json": 1} \u00e9\u4e2d \x00'
    logger.info("collection %s: %d", nasty, 3)
    logger.warning("%s", "}")
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == f"collection {nasty}: 3"
    assert first["level"] == "INFO" and first["logger"] == "veclink.test_logs"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert "request_id" not in first and "method" not in first  # outside any RPC
    assert second["message"] == "}" and second["level"] == "WARNING"


def test_request_id_and_method_inside_an_rpc(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = logged
    _in_rpc("rid-1", "/veclink.v1.Points/Upsert", lambda: logger.info("inside"))
    logger.info("outside")
    inside, outside = _lines(buffer)
    assert inside["request_id"] == "rid-1" and inside["method"] == "/veclink.v1.Points/Upsert"
    assert "request_id" not in outside


def test_an_exception_is_one_string_field(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = logged
    try:
        raise ValueError('bad "value"\non two lines')
    except ValueError:
        logger.exception("Upsert failed")
    (line,) = _lines(buffer)
    assert line["message"] == "Upsert failed" and line["level"] == "ERROR"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].rstrip().endswith('ValueError: bad "value"\non two lines')


def test_a_bad_format_string_still_gives_a_json_line() -> None:
    record = logging.LogRecord(
        "veclink.x", logging.INFO, __file__, 1, "%d records", ("not a number",), None
    )
    line = json.loads(JsonFormatter().format(record))
    assert "records" in line["message"] and "TypeError" in line["message"]


@pytest.mark.parametrize("value", ["abc-123", "7f3a9c1e", "A" * 128, "a.b_c:d/e=f"])
def test_a_short_printable_client_id_is_kept(value: str) -> None:
    assert request_id_from([("x-api-key", "k"), ("x-request-id", value)]) == value


@pytest.mark.parametrize(
    "value",
    ["", "with space", "A" * 129, "caf\u00e9", "line\nbreak", "tab\t", "\x7f", b"bytes"],
)
def test_any_other_client_id_is_replaced(value: Any) -> None:
    generated = request_id_from([("x-request-id", value)])
    assert generated != value and re.fullmatch(r"[0-9a-f]{32}", generated)


def test_generated_ids_differ() -> None:
    ids = {request_id_from(None) for _ in range(100)} | {request_id_from([("other", "x")])}
    assert len(ids) == 101 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_text_format_names_the_request() -> None:
    fmt = _TextFormatter("%(levelname)s %(name)s%(request)s: %(message)s")
    record = logging.LogRecord("veclink.x", logging.INFO, __file__, 1, "hello", None, None)
    assert fmt.format(record) == "INFO veclink.x: hello"
    assert _in_rpc("rid-2", "/m", lambda: fmt.format(record)) == "INFO veclink.x [rid-2]: hello"


@pytest.mark.parametrize(
    ("level", "fmt", "field"),
    [("LOUD", "json", "VECLINK_LOG_LEVEL"), ("INFO", "yaml", "VECLINK_LOG_FORMAT")],
)
def test_configure_rejects_unknown_levels_and_formats(level: str, fmt: str, field: str) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    with pytest.raises(InvalidArgument, match=field) as exc:
        configure_logging(level, fmt)
    assert exc.value.field == field
    assert root.handlers == before  # refused before touching the logging setup


def test_executor_work_logs_with_the_request_id(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = logged

    async def rpc(request_id: str) -> str:
        REQUEST_ID.set(request_id)
        METHOD.set("/veclink.v1.Points/Search")
        with ThreadPoolExecutor(2) as executor:
            return str(await run_in_context(executor, lambda: logger.info("in a thread") or "done"))

    async def two_rpcs() -> list[str]:
        # each in its own task, as grpc runs each RPC: neither sees the other's id
        return list(await asyncio.gather(rpc("rid-a"), rpc("rid-b")))

    assert asyncio.run(two_rpcs()) == ["done", "done"]
    assert sorted(line["request_id"] for line in _lines(buffer)) == ["rid-a", "rid-b"]
    assert REQUEST_ID.get() is None  # nothing leaked into the caller's context
