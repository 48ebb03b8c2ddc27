"""The veclink command line: run the server, talk to one, link tables, train encoders.

veclink serve [--data-dir D] [--host H] [--port P] [--demo]
veclink collection create|list|get|delete ...
veclink upsert COLLECTION FILE        (JSONL or CSV: id, text, other columns -> payload)
veclink search COLLECTION "query" -k 5 [--json]   (or --image PATH)
veclink embed "text" ... [--json]
veclink link LEFT RIGHT --out PAIRS.csv / veclink dedupe TABLE --out CLUSTERS.csv
veclink train text-encoder|clip ... / veclink eval moee ...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from veclink.cli import collection, jobs, points, serve, train
from veclink.cli.common import run_command


def build_parser() -> argparse.ArgumentParser:
    """The whole argparse tree; building it imports no heavy library."""
    parser = argparse.ArgumentParser(prog="veclink", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(sub)
    collection.add_parser(sub)
    points.add_parsers(sub)
    jobs.add_parsers(sub)
    train.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``veclink`` command.

    Returns:
        0 on success, 1 on a veclink error (its message on stderr; an unreachable server
        is named with a hint), 2 for flags argparse rejects, 130 on Ctrl-C.
    """
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
