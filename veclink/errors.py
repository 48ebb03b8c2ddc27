"""Domain errors shared by every layer.

Each error names the offending field (``field``) so the service can turn it into a precise
gRPC status without parsing messages. Layers raise these; only the service maps them to
status codes.
"""

from __future__ import annotations


class VeclinkError(Exception):
    """Base class of every error veclink raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(VeclinkError):
    """The caller sent something malformed (wrong dimension, empty text, bad config...)."""


class NotFound(VeclinkError):
    """A named thing (collection, model, job) does not exist."""


class AlreadyExists(VeclinkError):
    """A create would overwrite something that exists."""


class ResourceExhausted(VeclinkError):
    """A request is larger than a configured limit."""


class PermissionDenied(VeclinkError):
    """The caller may not do this: a wrong API key, or a source the settings do not allow."""


class FailedPrecondition(VeclinkError):
    """The system is not in a state that allows the operation (e.g. index closed)."""


class MissingDependency(VeclinkError):
    """An optional dependency is not installed; the message names the extra to install."""


class ClusterUnavailable(VeclinkError):
    """Part of the Ray cluster (a shard or an encoder replica) is down or restarting; retry."""


class DeadlineExceeded(VeclinkError):
    """The caller's deadline passed before the work was done (it was dropped unstarted)."""
