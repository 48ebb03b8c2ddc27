"""gRPC health checking: grpc's aio servicer plus the ``List`` method it leaves out, and
``Watch`` streams that end once the server is shutting down.

grpcio-health-checking's aio servicer inherits ``List`` from the generated base class,
which raises NotImplementedError, so a client calling it got UNKNOWN. This one answers it.
Its ``Watch`` never returns, so every open watcher held a graceful stop for the whole grace
period and was then cancelled; here a watcher gets NOT_SERVING and its stream ends (OK).
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

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        """Send the service's status whenever it changes; end after a shutdown began."""
        service = request.service
        condition = self._server_watchers[service]
        self._watcher_count_by_service[service] += 1
        last: int | None = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(
                        service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
                    )
                    if status != last:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                        last = status
                    if self._gracefully_shutting_down:
                        return
                    await condition.wait()
        finally:
            self._watcher_count_by_service[service] -= 1
            if self._watcher_count_by_service[service] == 0:
                del self._server_watchers[service]
                del self._watcher_count_by_service[service]

    async def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING for good, and every watcher told (then its stream ends)."""
        await super().enter_graceful_shutdown()
        # services nobody set (a watcher of an unknown name) hear of the shutdown too
        for service, condition in list(self._server_watchers.items()):
            if service not in self._server_status:
                async with condition:
                    condition.notify_all()
