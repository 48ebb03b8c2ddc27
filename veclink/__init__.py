"""veclink: embeddings, an in-place-updating vector index, and record linkage, over gRPC.

The import package is assembled from the repository's top-level folders:
``veclink.encoders`` (encoders/), ``veclink.index`` (index/), ``veclink.linkage``
(linkage/), ``veclink.service`` (service/) and the generated ``veclink.v1`` (proto/).
"""

from __future__ import annotations

from veclink.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    VeclinkError,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "InvalidArgument",
    "NotFound",
    "ResourceExhausted",
    "VeclinkError",
    "__version__",
]
