"""Every RPC has a request id: the client's own or a generated one, sent back as trailing
metadata (on errors too) and carried by every log line the call causes."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from veclink.service.logs import JsonFormatter
from veclink.v1 import collections_pb2, collections_pb2_grpc, points_pb2, points_pb2_grpc

from tests.fixtures.server import RunningServer, server_settings
from veclink.client import Client

WRITE = (("x-api-key", "w"),)
GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    settings = server_settings(
        tmp_path_factory.mktemp("ids"), auth={"read_keys": ["r"], "write_keys": ["w"]}
    )
    running = RunningServer(settings)
    with Client(running.address, api_key="w") as c:
        c.create_collection("c", dimensions=2, metric="ip")
    yield running
    running.stop()


@pytest.fixture
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What veclink logs (DEBUG and up) during the test, as JSON lines."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("veclink")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield buffer
    logger.removeHandler(handler)
    logger.setLevel(level)


def _of(buffer: io.StringIO, request_id: str, until: str = "veclink.rpc") -> list[dict[str, Any]]:
    """The lines of one request, once its ``until`` line is in (the client may see a failed
    call's status before the server has logged the end of it)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
        mine = [e for e in lines if e.get("request_id") == request_id]
        if any(e["logger"] == until for e in mine) or time.monotonic() > deadline:
            return mine
        time.sleep(0.01)


def _returned_id(metadata: Any) -> str:
    ids = [value for key, value in metadata or () if key == "x-request-id"]
    assert len(ids) == 1, metadata
    return str(ids[0])


def test_the_clients_id_comes_back_and_is_logged(
    channel: grpc.Channel, log_lines: io.StringIO
) -> None:
    stub = collections_pb2_grpc.CollectionsStub(channel)
    _, call = stub.ListCollections.with_call(
        collections_pb2.ListCollectionsRequest(), metadata=(*WRITE, ("x-request-id", "mine-1"))
    )
    assert _returned_id(call.trailing_metadata()) == "mine-1"
    (line,) = _of(log_lines, "mine-1")
    assert line["logger"] == "veclink.rpc"
    assert line["method"] == "/veclink.v1.Collections/ListCollections"
    assert re.fullmatch(
        r"/veclink.v1.Collections/ListCollections OK in [0-9.]+ ms", line["message"]
    )


def test_an_error_carries_the_id_and_logs_one_line_without_traceback(
    channel: grpc.Channel, log_lines: io.StringIO
) -> None:
    stub = points_pb2_grpc.PointsStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Upsert(
            points_pb2.UpsertRequest(collection="nope"),
            metadata=(*WRITE, ("x-request-id", "mine-2")),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert _returned_id(err.value.trailing_metadata()) == "mine-2"
    lines = _of(log_lines, "mine-2")
    assert [e["logger"] for e in lines] == ["veclink.service.servicers", "veclink.rpc"]
    assert "NOT_FOUND" in lines[0]["message"] and "NOT_FOUND" in lines[1]["message"]
    assert not any("exc" in e for e in lines)


def test_a_refused_key_and_an_undecodable_request_carry_an_id(
    channel: grpc.Channel, log_lines: io.StringIO
) -> None:
    stub = points_pb2_grpc.PointsStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Upsert(points_pb2.UpsertRequest(collection="c"))  # no key, no id
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    generated = _returned_id(err.value.trailing_metadata())
    assert GENERATED.fullmatch(generated)
    (line,) = _of(log_lines, generated)
    assert "UNAUTHENTICATED" in line["message"]

    raw = channel.unary_unary("/veclink.v1.Points/Upsert")
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\xff\xff\xff", metadata=(*WRITE, ("x-request-id", "mine-3")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _returned_id(err.value.trailing_metadata()) == "mine-3"
    loggers = [e["logger"] for e in _of(log_lines, "mine-3")]
    assert loggers == ["veclink.service.decoding", "veclink.rpc"]


@pytest.mark.parametrize("sent", ["has space", "x" * 129, ""])
def test_an_unfit_client_id_is_replaced(channel: grpc.Channel, sent: str) -> None:
    stub = collections_pb2_grpc.CollectionsStub(channel)
    _, call = stub.ListCollections.with_call(
        collections_pb2.ListCollectionsRequest(), metadata=(*WRITE, ("x-request-id", sent))
    )
    returned = _returned_id(call.trailing_metadata())
    assert returned != sent and GENERATED.fullmatch(returned)


def test_each_call_gets_its_own_id(channel: grpc.Channel) -> None:
    stub = collections_pb2_grpc.CollectionsStub(channel)
    ids = {
        _returned_id(
            stub.ListCollections.with_call(
                collections_pb2.ListCollectionsRequest(), metadata=WRITE
            )[1].trailing_metadata()
        )
        for _ in range(5)
    }
    assert len(ids) == 5


def test_streams_carry_the_id(channel: grpc.Channel, log_lines: io.StringIO) -> None:
    points = points_pb2_grpc.PointsStub(channel)
    batches = [
        points_pb2.UpsertRequest(
            collection="c", records=[points_pb2.Record(id=f"s{i}", vector={"values": [1, i]})]
        )
        for i in range(3)
    ]
    response, call = points.UpsertStream.with_call(
        iter(batches), metadata=(*WRITE, ("x-request-id", "stream-1"))
    )
    assert response.upserted == 3
    assert _returned_id(call.trailing_metadata()) == "stream-1"
    (line,) = _of(log_lines, "stream-1")
    assert "/veclink.v1.Points/UpsertStream OK" in line["message"]

    # a bidirectional stream (reflection is open: no key needed)
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
        metadata=(("x-request-id", "stream-2"),),
    )
    assert list(responses)
    assert _returned_id(responses.trailing_metadata()) == "stream-2"
    assert _of(log_lines, "stream-2")
