"""The operations HTTP port: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

- ``/healthz``: 200 while the process answers at all (liveness).
- ``/readyz``: 200 only when the gRPC health status of the server (service ``""``) is
  SERVING, which it becomes once the server has started (indexes replayed), and the
  catalog database answers ``SELECT 1``; 503 with the reason otherwise (readiness).
- ``/metrics``: the Prometheus text format of the default registry (the process-wide
  counters and histograms) and of this server's own collectors (gauges read at scrape
  time), through a registry of its own: several servers in one process (the tests) each
  serve their own gauges, and none is registered globally.
- Any other path: 404.

It runs on its own port (``server.metrics_port``) in a daemon thread, apart from the gRPC
port, so probes and scrapes need neither an API key nor a client certificate.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

#: seconds /readyz waits for the event loop or the catalog before it calls the server unready
READY_TIMEOUT_S = 2.0


class Readiness:
    """Answers "ready?" from the gRPC health servicer and the catalog engine."""

    def __init__(self, health: Any, engine: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.health = health
        self.engine = engine
        self.loop = loop

    async def _grpc_status(self) -> str:
        from grpc_health.v1 import health_pb2

        response = await self.health.Check(health_pb2.HealthCheckRequest(service=""), None)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def __call__(self) -> tuple[bool, str]:
        """(ready, reason); called from the HTTP thread."""
        try:
            future = asyncio.run_coroutine_threadsafe(self._grpc_status(), self.loop)
            status = future.result(timeout=READY_TIMEOUT_S)
        except Exception as exc:  # a stopped loop, a timeout: not ready, whatever the cause
            return False, f"gRPC health unknown ({type(exc).__name__})"
        if status != "SERVING":
            return False, f"gRPC health is {status}"
        from sqlalchemy import text

        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means the catalog is unreachable
            return False, f"catalog unreachable ({type(exc).__name__})"
        return True, "ready"


def _handler(
    ready: Callable[[], tuple[bool, str]], registry: CollectorRegistry
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._reply(200, b"ok\n")
            elif path == "/readyz":
                ok, reason = ready()
                self._reply(200 if ok else 503, reason.encode() + b"\n")
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("probe %s", format % args)  # scrapes every few seconds: not at INFO

    return Handler


class ProbeServer:
    """The HTTP server of the operations port, serving from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        ready: Callable[[], tuple[bool, str]],
        collectors: Sequence[Collector] = (),
    ) -> None:
        """Bind ``host:port`` (0: any free port) and start serving.

        ``/metrics`` serves the default registry and ``collectors``.

        Raises:
            OSError: the port cannot be bound; the message names ``server.metrics_port``.
        """
        # no auto-describe: the shared registry is collected only when scraped
        registry = CollectorRegistry(auto_describe=False)
        registry.register(REGISTRY)  # type: ignore[arg-type]  # it collects like a Collector
        for collector in collectors:
            registry.register(collector)
        try:
            self.http = ThreadingHTTPServer((host, port), _handler(ready, registry))
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot bind the metrics port {host}:{port} (server.metrics_port, "
                f"--metrics-port): {exc.strerror}",
            ) from exc
        self.http.daemon_threads = True
        self.port = int(self.http.server_address[1])
        self.thread = threading.Thread(
            target=self.http.serve_forever, name="veclink-probes", daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(timeout=5)
