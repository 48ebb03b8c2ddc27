"""Connecting to Ray, and what the store asks of the cluster: shard actors and encoder replicas."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from veclink.errors import MissingDependency

log = logging.getLogger(__name__)

#: the Ray namespace of every veclink actor (named shard actors are looked up in it)
NAMESPACE = "veclink"


def import_ray() -> Any:
    """``ray``, or an error that names the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependency(
            "cluster mode needs Ray: pip install 'veclink[ray]'", field="cluster.ray_address"
        ) from exc
    return ray


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterOptions:
    """How the store uses the cluster (from the ``[cluster]`` settings)."""

    #: Ray address: ``local`` starts a Ray inside this process, ``auto`` finds the node's
    #: cluster, ``ray://host:10001`` or ``host:6379`` connects to one
    ray_address: str
    #: CPUs one shard actor reserves (0: shards only need memory and disk)
    shard_cpus: float = 0.0
    #: CPUs a ``local`` Ray may use (0: all of this machine's)
    local_cpus: int = 0
    #: encoder replicas per served model (0: encoders run in the front-end process)
    encoder_replicas: int = 0
    #: CPUs and GPUs each encoder replica reserves
    encoder_cpus: float = 1.0
    encoder_gpus: float = 0.0
    #: shards of a linkage job's blocking index
    linkage_shards: int = 2


class RayCluster:
    """A connection to a Ray cluster, and the factories of the actors veclink runs there."""

    def __init__(self, options: ClusterOptions) -> None:
        self.options = options
        ray = import_ray()
        if ray.is_initialized():
            log.info("using this process's Ray connection")
        elif options.ray_address == "local":
            ray.init(
                num_cpus=options.local_cpus or None,
                namespace=NAMESPACE,
                include_dashboard=False,
                log_to_driver=False,
            )
        else:
            ray.init(address=options.ray_address, namespace=NAMESPACE, log_to_driver=False)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        log.info("connected to Ray: %d alive nodes", len(nodes))
        #: the shard actors this process started, by index directory. Their first handles
        #: live here: Ray ends an actor (named or not) once its creator's handles are gone,
        #: and a collection reopened after a failed write must find the same actors
        self._shards: dict[str, Any] = {}

    def load_encoder(self, spec: Any) -> Any:
        """A `ReplicatedEncoder` of ``spec`` with ``encoder_replicas`` actors."""
        from veclink.cluster.encoder_pool import ReplicatedEncoder

        return ReplicatedEncoder.start(
            spec,
            self.options.encoder_replicas,
            num_cpus=self.options.encoder_cpus,
            num_gpus=self.options.encoder_gpus,
        )

    def linkage_arguments(self, spec: Any, encoder: Any) -> dict[str, Any]:
        """``link``/``dedupe`` arguments that run a job on Ray Data (embed, block, compare).

        ``encoder``: the server's encoder of ``spec.encoder`` (for its dimension); the
        job's replicas load the spec themselves.
        """
        from veclink.cluster.linkage_job import RayJobOptions, job_arguments

        options = RayJobOptions(
            replicas=max(1, self.options.encoder_replicas),
            encoder_cpus=self.options.encoder_cpus,
            encoder_gpus=self.options.encoder_gpus,
            shards=max(1, self.options.linkage_shards),
        )
        source = spec.encoder if isinstance(spec.encoder, dict) else spec.encoder.to_dict()
        return job_arguments(dict(source), int(encoder.dim), options)

    def open_shards(
        self, root: Path, count: int, create: dict[str, Any] | None, nodes: list[str] | None
    ) -> Any:
        """Start the shard actors of a collection, or return those already running."""
        from veclink.cluster.ray_shards import RayShards

        running = self._shards.get(str(root))
        if running is not None and running.handles:
            return running
        shards = RayShards.start(root, count, create, nodes=nodes, num_cpus=self.options.shard_cpus)
        self._shards[str(root)] = shards
        return shards
