"""Crash benchmark: SIGKILL `veclink serve` under concurrent writers, many times, and count.

Runs tests/e2e/crash_harness.py (the suite's crash test) with many more kills per
configuration and prints one table row per configuration: kills, operations acknowledged,
lost, torn, resurrected and phantom records, the batches a kill caught unacknowledged (and
how many of them had been applied: either is fine, half is not), the largest WAL seen after a
kill and the longest index replay the restarted server logged.

    python bench/crash.py                                   # 13 kills x 4 configurations
    python bench/crash.py --kills 5 --no-postgres           # quick, SQLite only
    python bench/crash.py --checkpoint-records 0            # no checkpoint by record count
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _harness():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "crash_harness", ROOT / "tests" / "e2e" / "crash_harness.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["crash_harness"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _pg_schema(url: str) -> tuple[str, object]:
    from sqlalchemy import create_engine, text

    schema = f"veclink_crash_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    return f"{url}?options=-csearch_path%3D{schema}", (admin, schema)


def _drop(handle: object) -> None:
    from sqlalchemy import text

    admin, schema = handle  # type: ignore[misc]
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=13, help="kills per configuration")
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--checkpoint-records", type=int, default=40)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    h = _harness()
    dbs = ["sqlite"] if args.no_postgres else ["sqlite", "postgres"]
    rows = []
    began = time.monotonic()
    for db in dbs:
        for kind in ("flat", "partitioned"):
            handle = None
            url = ""
            if db == "postgres":
                url, handle = _pg_schema(args.pg_url)
            config = h.CrashConfig(
                kind=kind,
                database_url=url,
                kills=args.kills,
                writers=args.writers,
                checkpoint_records=args.checkpoint_records,
                seed=args.seed + len(rows),
            )
            try:
                with tempfile.TemporaryDirectory(prefix="veclink-crash-") as tmp:
                    report = h.run_crashes(
                        Path(tmp) / "data", config, log=lambda m: print(m, file=sys.stderr)
                    )
            finally:
                if handle is not None:
                    _drop(handle)
            rows.append((kind, db, report))
            for line in report.problems[:10]:
                print(f"  {kind}/{db}: {line}", file=sys.stderr)
    head = (
        "| index | catalog | kills | ops acknowledged | lost | torn | resurrected | phantom "
        "| in flight (applied) | WAL bytes max | replay s max |"
    )
    print(
        f"\n`python bench/crash.py {' '.join(sys.argv[1:])}` ({time.monotonic() - began:.0f} s)\n"
    )
    print(head)
    print("|" + "---|" * 11)
    total = [0] * 6
    for kind, db, r in rows:
        cells = [r.kills, r.acknowledged, r.lost, r.torn, r.resurrected, r.phantom]
        total = [a + b for a, b in zip(total, cells, strict=True)]
        print(
            f"| {kind} | {db} | "
            + " | ".join(str(c) for c in cells)
            + f" | {r.in_flight} ({r.in_flight_applied})"
            + f" | {r.wal_bytes_max:,} | {r.replay_seconds_max:.3f} |"
        )
    print("| **all** | | " + " | ".join(f"**{c}**" for c in total) + " | | | |")


if __name__ == "__main__":
    main()
