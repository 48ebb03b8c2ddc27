"""`RayShards`: a collection's shards as Ray actors, each pinned to the node holding its disk.

Every shard is an actor running `veclink.cluster.shard.Shard` with ``max_restarts=-1``: when
its process dies, Ray starts it again on the same node (hard node affinity, since its WAL is
on that node's disk) and the new process replays the WAL on its first call. Calls that were
in flight when it died fail (``max_task_retries=0``: a write is never silently applied
twice out of order); the store turns that failure into UNAVAILABLE, rolls the other shards
back to the catalog's commit, and the client retries.

The store's `RayCluster` keeps each collection's `RayShards`, so a collection reopened after
a failed write finds the same actors (and rolls them back) instead of starting new ones.
Actors are named after the collection's index directory and shard, for operators.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from veclink.cluster.shard import Shard
from veclink.cluster.sharded import Call, shard_path

from veclink.errors import ClusterUnavailable, VeclinkError

log = logging.getLogger(__name__)

_ShardActor = ray.remote(max_restarts=-1, max_task_retries=0)(Shard)

#: calls that may be sent again to a shard that is restarting (they change nothing, or
#: change it to the same end state); writes are not, the store fails them instead
RETRIED = frozenset(
    {"status", "rollback", "search", "get", "ids", "stats", "where", "flush", "wait_idle"}
)
#: seconds a retried call waits for a restarting shard
RESTART_WAIT = 60.0


def alive_nodes() -> list[str]:
    """Ids of the cluster's alive nodes, sorted (a stable order to place shards in)."""
    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))


class RayShards:
    """The shard actors of one collection."""

    def __init__(self, handles: Sequence[Any], nodes: Sequence[str]) -> None:
        self.handles = list(handles)
        self.nodes = list(nodes)
        self.count = len(self.handles)

    @classmethod
    def start(
        cls,
        root: Path,
        count: int,
        create: dict[str, Any] | None,
        *,
        nodes: Sequence[str] | None = None,
        num_cpus: float = 0.0,
    ) -> RayShards:
        """Start (or find) the actors of shards ``0..count-1`` under ``root``.

        ``nodes``: where each shard lives (from the catalog's shard map); None places them
        round-robin over the alive nodes. A shard whose node is gone is placed anywhere,
        with a warning: its directory must then be reachable there (a shared volume).
        """
        alive = alive_nodes()
        if not alive:
            raise ClusterUnavailable("the Ray cluster has no alive node", field="cluster")
        placed = list(nodes) if nodes else [alive[s % len(alive)] for s in range(count)]
        handles = []
        for s in range(count):
            node = placed[s]
            soft = node not in alive
            if soft:
                log.warning(
                    "shard %d of %s: its node %s is gone; starting it elsewhere", s, root, node
                )
            handles.append(
                _ShardActor.options(
                    name=f"veclink-shard-{root.name}-{s}",
                    num_cpus=num_cpus,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=soft),
                ).remote(str(shard_path(root, s)), create)
            )
        return cls(handles, placed)

    def call(self, calls: Sequence[Call]) -> list[Any]:
        refs = [getattr(self.handles[s], method).remote(*args) for s, method, args in calls]
        results: list[Any] = []
        error: BaseException | None = None
        for (s, method, args), ref in zip(calls, refs, strict=True):
            try:
                results.append(self._get(ref, s, method, args))
            except RayTaskError as exc:  # the shard raised: hand its own error on
                cause = exc.cause if isinstance(exc.cause, VeclinkError) else exc
                error = error or cause
            except (RayActorError, GetTimeoutError) as exc:
                error = error or ClusterUnavailable(
                    f"shard {s} is unavailable during {method} (Ray restarts it; retry): "
                    f"{type(exc).__name__}",
                    field="shard",
                )
        if error is not None:
            raise error
        return results

    def _get(self, ref: Any, shard: int, method: str, args: tuple[Any, ...]) -> Any:
        """The call's result; a read sent while its shard restarts is sent again."""
        deadline = time.monotonic() + RESTART_WAIT
        delay = 0.05
        while True:
            try:
                return ray.get(ref)
            except ActorUnavailableError:
                if method not in RETRIED or time.monotonic() > deadline:
                    raise
                log.info("shard %d is restarting; %s again in %.2f s", shard, method, delay)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                ref = getattr(self.handles[shard], method).remote(*args)

    def abandon(self) -> None:
        """Nothing to drop here: the reopened collection rolls each actor back instead."""

    def release(self) -> None:
        for handle in self.handles:
            ray.kill(handle, no_restart=True)
        self.handles = []
