"""Encoder replicas: a pool of Ray actors per model, fed by a batching front-end.

`EncoderReplica` is one actor holding one loaded encoder (one GPU each when the pool asks
for GPUs: Ray sets the replica's CUDA_VISIBLE_DEVICES). `ReplicatedEncoder` is what the
store sees: an `Encoder` whose ``encode`` hands the inputs to a `RequestBatcher`, which
coalesces concurrent requests of the same role and instruction for up to ``max_wait``
seconds or ``max_batch`` inputs, cuts what it gathered into chunks of ``max_batch``, sends
each chunk to the replica with the fewest chunks in flight, and hands every caller its
rows back. Many one-text searches become a few batched forward passes; one large upsert
is spread over every replica at once.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError
from veclink.encoders import Encoder, EncoderSpec, load_encoder, spec_from_dict

from veclink.errors import ClusterUnavailable, InvalidArgument, VeclinkError


class EncoderReplica:
    """One loaded encoder in a Ray actor."""

    def __init__(self, spec: dict[str, Any], threads: int) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.encoder = load_encoder(spec_from_dict(spec))

    def describe(self) -> dict[str, Any]:
        return {"dim": self.encoder.dim, "modality": self.encoder.modality}

    def encode(self, inputs: list[str | bytes], role: str, instruction: str) -> np.ndarray:
        encoder = self.encoder.with_instruction(instruction) if instruction else self.encoder
        return encoder.encode(inputs, role=role)  # type: ignore[arg-type]


_Replica = ray.remote(max_restarts=-1, max_task_retries=2)(EncoderReplica)


@dataclasses.dataclass
class _Request:
    inputs: list[str | bytes]
    role: str
    instruction: str
    future: Future[np.ndarray]


class RequestBatcher:
    """Coalesces concurrent encode requests and spreads them over the replicas."""

    def __init__(self, handles: Sequence[Any], *, max_batch: int, max_wait: float) -> None:
        self.handles = list(handles)
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._in_flight = [0] * len(self.handles)
        #: chunks sent to replicas so far (requests coalesce, so usually fewer than requests)
        self.chunks_sent = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="encoder-batcher", daemon=True)
        self._thread.start()

    def submit(self, inputs: list[str | bytes], role: str, instruction: str) -> np.ndarray:
        request = _Request(inputs, role, instruction, Future())
        self._queue.put(request)
        return request.future.result()

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, others, size = [first], [], len(first.inputs)
            deadline = time.monotonic() + self.max_wait
            while size < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                if (nxt.role, nxt.instruction) == (first.role, first.instruction):
                    group.append(nxt)
                    size += len(nxt.inputs)
                else:
                    others.append(nxt)
            self._dispatch(group)
            for request in others:
                self._dispatch([request])

    def _dispatch(self, group: list[_Request]) -> None:
        inputs = [item for request in group for item in request.inputs]
        chunks = [inputs[i : i + self.max_batch] for i in range(0, len(inputs), self.max_batch)]
        results: list[np.ndarray | None] = [None] * len(chunks)
        left = [len(chunks)]
        done_lock = threading.Lock()

        def finish(error: BaseException | None) -> None:
            if error is not None:
                for request in group:
                    if not request.future.done():
                        request.future.set_exception(error)
                return
            rows = np.concatenate(results)  # type: ignore[arg-type]
            start = 0
            for request in group:
                request.future.set_result(rows[start : start + len(request.inputs)])
                start += len(request.inputs)

        for c, chunk in enumerate(chunks):
            with self._lock:
                replica = min(range(len(self.handles)), key=self._in_flight.__getitem__)
                self._in_flight[replica] += 1
                self.chunks_sent += 1
            ref = self.handles[replica].encode.remote(chunk, group[0].role, group[0].instruction)

            def on_done(fut: Future[Any], c: int = c, replica: int = replica) -> None:
                with self._lock:
                    self._in_flight[replica] -= 1
                error = fut.exception()
                with done_lock:
                    if error is None:
                        results[c] = fut.result()
                    left[0] -= 1
                    last = left[0] == 0
                if error is not None:
                    finish(_domain_error(error))
                elif last:
                    finish(None)

            ref.future().add_done_callback(on_done)


def _domain_error(error: BaseException) -> BaseException:
    if isinstance(error, RayTaskError) and isinstance(error.cause, VeclinkError):
        return error.cause
    if isinstance(error, RayActorError):
        return ClusterUnavailable(
            f"an encoder replica is unavailable ({type(error).__name__}); retry", field="model"
        )
    return error


class ReplicatedEncoder(Encoder):
    """An `Encoder` whose work runs on a pool of `EncoderReplica` actors."""

    def __init__(
        self,
        spec: EncoderSpec,
        batcher: RequestBatcher,
        *,
        dim: int,
        modality: str,
        instruction: str = "",
    ) -> None:
        self.spec = spec
        self.batcher = batcher
        self._dim = dim
        self._modality = modality
        self.instruction = instruction

    @classmethod
    def start(
        cls,
        spec: EncoderSpec,
        replicas: int,
        *,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_batch: int = 64,
        max_wait: float = 0.002,
    ) -> ReplicatedEncoder:
        """Start ``replicas`` actors of ``spec`` (each with ``num_gpus``, e.g. one GPU)."""
        if replicas < 1:
            raise InvalidArgument(f"replicas must be >= 1; got {replicas}", field="replicas")
        spec_dict = spec.to_dict()
        if num_gpus and "device" in spec_dict:
            spec_dict["device"] = "cuda"  # Ray gives each replica its own GPU as cuda:0
        threads = max(1, int(num_cpus)) if num_cpus else 0
        handles = [
            _Replica.options(num_cpus=num_cpus, num_gpus=num_gpus).remote(spec_dict, threads)
            for _ in range(replicas)
        ]
        info = ray.get([h.describe.remote() for h in handles])[0]
        batcher = RequestBatcher(handles, max_batch=max_batch, max_wait=max_wait)
        return cls(spec, batcher, dim=int(info["dim"]), modality=str(info["modality"]))

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def modality(self) -> Any:
        return self._modality

    @property
    def replicas(self) -> int:
        return len(self.batcher.handles)

    def encode(self, inputs: Sequence[str | bytes], role: Any = "document") -> np.ndarray:
        if role not in ("query", "document"):
            raise InvalidArgument(f"role must be query or document; got {role!r}", field="role")
        inputs = list(inputs)
        self.check_inputs(inputs)
        if not inputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.batcher.submit(inputs, str(role), self.instruction)

    def with_instruction(self, instruction: str) -> Encoder:
        return ReplicatedEncoder(
            self.spec,
            self.batcher,
            dim=self._dim,
            modality=self._modality,
            instruction=instruction,
        )

    # the stages run inside the replicas; this front never calls them
    def preprocess(self, inputs: Sequence[str | bytes], role: Any) -> Any:
        raise NotImplementedError("a replicated encoder runs its stages in the replicas")

    def forward(self, batch: Any) -> Any:
        raise NotImplementedError("a replicated encoder runs its stages in the replicas")

    def postprocess(self, output: Any, batch: Any) -> np.ndarray:
        raise NotImplementedError("a replicated encoder runs its stages in the replicas")

    def close(self) -> None:
        """Stop the batcher and the replicas."""
        self.batcher.close()
        for handle in self.batcher.handles:
            ray.kill(handle, no_restart=True)
