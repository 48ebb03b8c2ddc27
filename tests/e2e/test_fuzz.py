"""Property-based fuzzing of every RPC against a real in-process server (issue 13).

Any request message of any RPC (hostile field values, deep JSON, huge strings) and any raw
bytes get a precise status, never UNKNOWN or INTERNAL, and leave the stored data unchanged
unless a write succeeded. bench/fuzz.py runs the same checks for many more requests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fixtures.fuzz import FuzzTarget, Method, all_methods, request_strategy
from tests.fixtures.server import RunningServer, server_settings

METHODS = all_methods()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    running = RunningServer(server_settings(tmp_path_factory.mktemp("fuzz")))
    fuzz = FuzzTarget(running.address)
    yield fuzz
    fuzz.close()
    running.stop()


def test_methods_cover_every_rpc() -> None:
    names = {m.path for m in METHODS}
    assert len([n for n in names if n.startswith("/veclink.v1.")]) == 16
    assert "/grpc.health.v1.Health/Check" in names
    assert "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" in names


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_fuzz_rpc(target: FuzzTarget, method: Method) -> None:
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests=request_strategy(method, target.pools))
    def run(requests: list[bytes]) -> None:
        before = len(target.failures)
        target.check(method, requests)
        assert target.failures[before:] == []

    run()
    tally = target.tally[method.name]
    assert tally.requests > 0 and tally.bad == 0 and tally.changed == 0
