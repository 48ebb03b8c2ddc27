"""gRPC health checking: grpc's aio servicer plus the ``List`` method it leaves out.

grpcio-health-checking's aio servicer inherits ``List`` from the generated base class,
which raises NotImplementedError, so a client calling it got UNKNOWN. This one answers it.
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health, health_pb2


class HealthServicer(health.aio.HealthServicer):
    """Check, Watch and List over the statuses set with ``set``."""

    async def List(
        self, request: health_pb2.HealthListRequest, context: Any
    ) -> health_pb2.HealthListResponse:
        """Every service's current status."""
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in self._server_status.items()
            }
        )
