"""Fuzz every RPC of a real veclink server with malformed requests; print a table per RPC.

The same strategies and checks as tests/e2e/test_fuzz.py (tests/fixtures/fuzz.py), for many
more requests and with bigger strings (up to 5,000,000 characters): every request message of
veclink's 16 RPCs, health checking and reflection, hostile field values and raw bytes. For
each RPC: requests sent, the status codes seen, UNKNOWN/INTERNAL (or other unexpected)
answers, and whether the stored data stayed unchanged after every rejected request. Also
counts the tracebacks the server logged.

Run (about 10 minutes on a 2-core machine)::

    python bench/fuzz.py --requests 10000 --seed 0
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.fuzz import FuzzTarget, Method, all_methods, request_strategy  # noqa: E402
from tests.fixtures.server import RunningServer, server_settings  # noqa: E402


class _Tracebacks(logging.Handler):
    """Counts log records that carry a traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.count += 1


def hash_path(path: str) -> int:
    """A stable per-RPC seed offset (``hash`` differs per process)."""
    return sum(path.encode()) % 10_000


def fuzz_method(target: FuzzTarget, method: Method, examples: int, seed_value: int) -> None:
    @seed(seed_value)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(requests=request_strategy(method, target.pools))
    def run(requests: list[bytes]) -> None:
        target.check(method, requests)  # tallies; failures are listed after the table

    run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000, help="total requests, all RPCs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="fuzz only RPCs whose name contains this")
    args = ap.parse_args()

    logging.basicConfig(level=logging.WARNING)  # tracebacks go to stderr
    tracebacks = _Tracebacks()
    logging.getLogger().addHandler(tracebacks)
    methods = [m for m in all_methods() if args.only in m.path]
    per_method = math.ceil(args.requests / len(methods))
    with tempfile.TemporaryDirectory() as tmp:
        # the default 64 MiB messages, so 5,000,000-character strings reach the handlers
        running = RunningServer(
            server_settings(Path(tmp), server={"port": 0, "max_message_bytes": 64 << 20})
        )
        target = FuzzTarget(running.address)
        target.pools.huge = (*target.pools.huge, 1_000_000, 5_000_000)
        start = time.perf_counter()
        try:
            for method in methods:
                fuzz_method(target, method, per_method, args.seed + hash_path(method.path))
                print(f"{method.path}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        finally:
            elapsed = time.perf_counter() - start
            target.close()
            running.stop()

    print(f"\nbench/fuzz.py --requests {args.requests} --seed {args.seed}: {elapsed:.0f} s\n")
    print(f"| {'RPC':<62} | requests | {'codes seen':<70} | UNKNOWN/INTERNAL | unchanged |")
    print(f"|{'-' * 64}|---------:|{'-' * 72}|-----------------:|:---------:|")
    total = bad = changed = 0
    for method in methods:
        t = target.tally[method.name]
        codes = ", ".join(f"{c} {n}" for c, n in t.codes.most_common())
        print(
            f"| {method.path:<62} | {t.requests:>8} | {codes:<70} | {t.bad:>16} | "
            f"{'yes' if t.changed == 0 else 'NO':^9} |"
        )
        total += t.requests
        bad += t.bad
        changed += t.changed
    print(
        f"| {'all':<62} | {total:>8} | {'':<70} | {bad:>16} | "
        f"{'yes' if changed == 0 else 'NO':^9} |"
    )
    print(f"\ntracebacks logged by the server: {tracebacks.count}")
    for failure in target.failures[:50]:
        print("FAIL", failure)
    sys.exit(1 if target.failures else 0)


if __name__ == "__main__":
    main()
