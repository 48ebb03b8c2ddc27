"""What every client command shares: the server address, the API key and the client."""

from __future__ import annotations

import argparse
import os
from typing import Any

DEFAULT_SERVER = "127.0.0.1:50051"


def add_remote(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--server`` and ``--api-key`` (defaults from the environment) to ``p``."""
    p.add_argument(
        "--server",
        default=os.environ.get("VECLINK_SERVER", DEFAULT_SERVER),
        help=f"host:port of a veclink server (default {DEFAULT_SERVER})",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("VECLINK_API_KEY"),
        help="API key (default: $VECLINK_API_KEY)",
    )
    return p


def client(args: argparse.Namespace) -> Any:
    """A ``veclink.client.Client`` for ``args.server`` / ``args.api_key``."""
    from veclink.client import Client

    return Client(args.server, api_key=args.api_key)
