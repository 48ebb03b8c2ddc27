"""``veclink serve``: run the gRPC server."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from veclink.cli.common import non_negative_int


def add_parser(sub: Any) -> None:
    """Register ``serve`` on the top-level sub-parsers."""
    p = sub.add_parser("serve", help="run the gRPC server")
    p.add_argument("--config", help="TOML settings file (env VECLINK__SECTION__KEY overrides it)")
    p.add_argument("--data-dir", help="catalog and indexes (default ./veclink-data)")
    p.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=non_negative_int, help="port (default 50051; 0: any free port)")
    p.add_argument(
        "--database-url", help="SQLAlchemy URL of the catalog (default SQLite in data dir)"
    )
    p.add_argument("--index-kind", choices=("flat", "partitioned"), help="default index kind")
    p.add_argument("--tls-cert", help="server certificate chain (PEM): serve TLS only")
    p.add_argument("--tls-key", help="private key (PEM) of --tls-cert")
    p.add_argument(
        "--tls-client-ca",
        help="CA bundle (PEM) that client certificates must chain to: mutual TLS",
    )
    p.add_argument(
        "--metrics-port",
        type=non_negative_int,
        help="port of HTTP /metrics, /healthz, /readyz (default 9464; 0: any free port)",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="cluster mode on Ray: 'local' starts one here, 'auto', host:6379 or "
        "ray://host:10001 joins a cluster (needs pip install 'veclink[ray]')",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="create the 'wordnet' demo collection (4,998 glosses) if it is missing",
    )
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """``veclink serve``: settings from file, environment and flags; serve until stopped."""
    from veclink.service.logs import configure_logging
    from veclink.service.server import build_store, cluster_warnings, serve_forever
    from veclink.service.settings import load_settings

    # before anything logs: JSON lines on stderr (VECLINK_LOG_FORMAT=text for a terminal)
    configure_logging(
        os.environ.get("VECLINK_LOG_LEVEL", "INFO"), os.environ.get("VECLINK_LOG_FORMAT", "json")
    )

    overrides: dict[str, dict[str, Any]] = {"server": {}, "storage": {}, "cluster": {}}
    if args.ray:
        overrides["cluster"]["ray_address"] = args.ray
    if args.host:
        overrides["server"]["host"] = args.host
    if args.port is not None:
        overrides["server"]["port"] = args.port
    if args.data_dir:
        overrides["storage"]["data_dir"] = args.data_dir
    if args.database_url:
        overrides["storage"]["database_url"] = args.database_url
    if args.index_kind:
        overrides["storage"]["default_index_kind"] = args.index_kind
    if args.metrics_port is not None:
        overrides["server"]["metrics_port"] = args.metrics_port
    tls = {
        key: value
        for key, value in (
            ("cert", args.tls_cert),
            ("key", args.tls_key),
            ("client_ca", args.tls_client_ca),
        )
        if value
    }
    if tls:
        overrides["server"]["tls"] = tls
    settings = load_settings(args.config, overrides=overrides)
    for warning in cluster_warnings(settings):
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    store = build_store(settings)  # models load on first use: a start does not wait for one

    def prepare() -> None:  # after the port is bound, before SERVING
        if args.demo:
            from veclink.service.demo import load_demo

            load_demo(store)

    asyncio.run(serve_forever(settings, store, prepare))
    return 0
