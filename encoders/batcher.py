"""Dynamic batching across callers: one `EncodeBatcher` in front of each loaded encoder.

Concurrent ``submit`` calls (gRPC handlers, searches, linkage jobs) are merged into shared
batches, so 32 clients sending one text each are encoded like one caller sending 32:

- **Collecting.** When the model is idle a request is dispatched at once: a lone request
  waits for nothing. While the model is busy, requests gather until it frees (or until
  they fill ``max_batch``): closing a group earlier could not make it run sooner, and
  closing it after a fixed wait split 8 closed-loop clients into groups of 2-3. Right
  after a batch (``WARM_S``) an idle model waits up to ``max_wait_s`` for as many
  requests as came together lately, since clients send their next requests a few
  milliseconds after their replies. (Running a lone request on the collector thread
  itself, to save one hand-over, made bf16's single-request p50 worse: the model then ran
  on two threads in turn.)
- **Batching.** A group's inputs (per role; duplicates across requests encoded once) are
  sorted by length and cut into batches of at most ``max_batch`` rows and
  ``batch_tokens`` padded tokens, as `Encoder.encode` cuts one caller's inputs.
- **Overlap.** A collector thread runs the CPU stage (``preprocess``: tokenising, decoding
  images) of the next batch while a model thread runs ``forward`` + ``postprocess`` of the
  previous one; one prepared batch waits between them.
- **Isolation.** Inputs are checked per request before they join a group, so a bad input
  fails its own request at once. If a merged batch still fails (an image that only fails
  to decode), each request in it is encoded again on its own: only the request whose input
  fails gets the error.
- **Cancellation and deadlines.** A request cancelled (`Ticket.cancel`) or past its
  deadline is dropped before its inputs are tokenised, and rows that only it needs are left
  out of batches that have not run yet.

Every caller gets float32 ``(len(inputs), dim)`` rows in its own input order, the same
vectors (to floating-point noise of different padding) as ``encoder.encode(inputs)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
from veclink.encoders.base import ROLES, Encoder, Modality, Role, cut_batches

from veclink.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)


#: the padded-token budget of a batch on the CPU when neither the policy nor the encoder
#: sets one. Merged requests are random lengths; sorted and cut at 256 tokens, 512 WordNet
#: glosses in groups of 32 ran 3-4x faster than whole groups of 32 with all-MiniLM-L6-v2 on
#: 2 cores (less padding, and activations that stay in cache), and 1.6-2x faster than
#: sentence-transformers' length-sorted batches of 32 (BENCHMARKS.md, bench/encode.py).
#: A GPU wants the opposite (large batches), so there no budget applies by default.
CPU_BATCH_TOKENS = 256


def _counts_tokens_on_cpu(encoder: Encoder) -> bool:
    """A model on the CPU whose ``input_lengths`` are tokens (not the default characters)."""
    device = getattr(encoder, "device", None)
    tokens = type(encoder).input_lengths is not Encoder.input_lengths
    return tokens and getattr(device, "type", None) == "cpu"


#: how soon after a batch an idle model still counts as busy for ``_expecting`` (seconds)
WARM_S = 0.05


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchPolicy:
    """How an `EncodeBatcher` merges requests."""

    #: longest an idle model waits, right after a batch, for as many requests as came
    #: together lately (seconds); a request after a quiet spell never waits, and while the
    #: model is busy requests gather until it frees
    max_wait_s: float = 0.003
    #: most inputs per forward pass; 0: the encoder's ``batch_size``
    max_batch: int = 0
    #: most padded tokens (rows x longest row) per forward pass; 0: the encoder's
    #: ``batch_tokens``, and when that is unset too `CPU_BATCH_TOKENS` for a tokenising
    #: encoder on the CPU, else only ``max_batch`` limits a batch
    batch_tokens: int = 0


class Ticket:
    """One submitted request: ``result()`` waits for its vectors; ``cancel()`` drops it."""

    def __init__(self, inputs: list[str | bytes], role: Role, deadline: float | None) -> None:
        self.inputs = inputs
        self.role = role
        #: ``time.monotonic()`` after which it is not worth encoding (None: no deadline)
        self.deadline = deadline
        self.future: Future[np.ndarray] = Future()
        self.arrived = time.monotonic()
        self.abandoned = False
        self._rows: np.ndarray | None = None
        self._missing = len(inputs)

    def cancel(self) -> None:
        """Give up on this request: it is dropped before it is encoded, if it still can be."""
        self.abandoned = True
        self.future.cancel()

    def result(self, timeout: float | None = None) -> np.ndarray:
        return self.future.result(timeout)

    @property
    def done(self) -> bool:
        return self.future.done()

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def _fill(self, positions: list[int], rows: np.ndarray) -> None:
        if self.done:
            return
        if self._rows is None:
            self._rows = np.empty((len(self.inputs), rows.shape[1]), dtype=np.float32)
        self._rows[positions] = rows
        self._missing -= len(positions)
        if self._missing == 0:
            self._finish(self._rows, None)

    def _finish(self, rows: np.ndarray | None, error: BaseException | None) -> None:
        if self.future.done():
            return
        try:
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(rows)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 -- cancelled in between: nobody waits for it
            pass


@dataclasses.dataclass
class _Item:
    """One distinct input of a group, and where its vector goes."""

    value: str | bytes
    length: int
    #: (request, position in its inputs) for every request that sent this input
    targets: list[tuple[Ticket, int]]

    def wanted(self) -> bool:
        return any(not t.abandoned and not t.done for t, _ in self.targets)


@dataclasses.dataclass
class _Prepared:
    items: list[_Item]
    role: Role
    batch: Any = None
    error: BaseException | None = None


_STOP = object()


class EncodeBatcher:
    """Merges concurrent encode requests to one encoder into shared batches.

    Args:
        encoder: the encoder; its ``preprocess`` runs on the collector thread, its
            ``forward`` and ``postprocess`` on the model thread (other callers may still
            use it directly: encoders are thread-safe).
        policy: waiting and batch limits.
        name: for thread names and logs.
    """

    def __init__(
        self, encoder: Encoder, policy: BatchPolicy | None = None, *, name: str = "encoder"
    ) -> None:
        self.encoder = encoder
        self.policy = policy or BatchPolicy()
        self.max_batch = self.policy.max_batch or encoder.batch_size
        self.batch_tokens = (
            self.policy.batch_tokens
            or encoder.batch_tokens
            or (CPU_BATCH_TOKENS if _counts_tokens_on_cpu(encoder) else 0)
        )
        self.name = name
        self._lock = threading.Condition()
        self._pending: list[Ticket] = []
        self._pending_inputs = 0
        #: the prepared batch handed to the model thread (at most one waits)
        self._ready: _Prepared | object | None = None
        #: batches running now on the model thread (0 or 1)
        self._active = 0
        #: when the model last finished a batch, and how many requests came together
        #: lately (see ``_expecting``)
        self._last_done = 0.0
        self._expect = 1.0
        self._closed = False
        #: batches run and inputs encoded (for tests and metrics)
        self.batches = 0
        self.encoded = 0
        self._collector = threading.Thread(
            target=self._collect_loop, name=f"veclink-batch-{name}", daemon=True
        )
        self._model = threading.Thread(
            target=self._model_loop, name=f"veclink-model-{name}", daemon=True
        )
        self._collector.start()
        self._model.start()

    # ------------------------------------------------------------------ callers

    def submit(
        self,
        inputs: Sequence[str | bytes],
        role: Role = "document",
        *,
        deadline: float | None = None,
    ) -> Ticket:
        """Queue ``inputs``; the ticket's ``result()`` is float32 ``(len(inputs), dim)``.

        Raises:
            InvalidArgument: a bad role or input (naming ``inputs[i]``), before queueing.
            FailedPrecondition: the batcher is closed.
        """
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {ROLES}; got {role!r}", field="role")
        inputs = list(inputs)
        self.encoder.check_inputs(inputs)
        ticket = Ticket(inputs, role, deadline)
        if not inputs:
            ticket._finish(np.zeros((0, self.encoder.dim), dtype=np.float32), None)
            return ticket
        with self._lock:
            if self._closed:
                raise FailedPrecondition(f"encoder {self.name} is shut down", field="model")
            self._pending.append(ticket)
            self._pending_inputs += len(inputs)
            self._lock.notify_all()
        return ticket

    def encode(
        self,
        inputs: Sequence[str | bytes],
        role: Role = "document",
        *,
        deadline: float | None = None,
    ) -> np.ndarray:
        """``submit`` and wait: the same contract as `Encoder.encode`."""
        ticket = self.submit(inputs, role, deadline=deadline)
        try:
            return ticket.result()
        except BaseException:
            ticket.cancel()
            raise

    def close(self) -> None:
        """Finish what is queued, then stop the threads."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._collector.join()
        self._model.join()

    # ------------------------------------------------------------------ collector thread

    def _idle(self) -> bool:
        return self._active == 0 and self._ready is None

    def _take_group(self) -> list[Ticket] | None:
        """Wait for a group to close (see the module docstring); None once closed and empty."""
        with self._lock:
            while True:
                if not self._pending:
                    if self._closed:
                        return None
                    self._lock.wait()
                    continue
                now = time.monotonic()
                full = self._pending_inputs >= self.max_batch
                waited = now - self._pending[0].arrived
                idle = self._idle()
                if (
                    full
                    or self._closed
                    or (idle and (waited >= self.policy.max_wait_s or not self._expecting(now)))
                ):
                    group, self._pending, self._pending_inputs = self._pending, [], 0
                    # callers seen together recently: expect about as many next time
                    self._expect = max(float(len(group)), self._expect * 0.5)
                    return group
                # busy: the group stays open until the model frees (it could not run sooner)
                self._lock.wait(max(self.policy.max_wait_s - waited, 1e-4) if idle else None)

    def _expecting(self, now: float) -> bool:
        """Whether an idle model should still wait (up to ``max_wait_s``) for more requests.

        Only right after a batch (the model ran within ``WARM_S``) and only while fewer
        requests are pending than came together lately: closed-loop clients send their
        next requests a few milliseconds after their replies, and dispatching the first one
        alone split 8 clients' requests into batches of 1 and 7. A lone caller (groups of
        one) and a request after a quiet spell are dispatched at once.
        """
        warm = now - self._last_done <= WARM_S
        return warm and len(self._pending) < self._expect

    def _collect_loop(self) -> None:
        while True:
            group = self._take_group()
            if group is None:
                self._hand(_STOP)
                return
            try:
                for prepared in self._plan(group):
                    if any(item.wanted() for item in prepared.items):
                        self._prepare(prepared)
                        self._hand(prepared)
            except Exception as exc:  # noqa: BLE001 -- a bug here must not hang the callers
                log.exception("batcher %s: planning a group failed", self.name)
                for ticket in group:
                    ticket._finish(None, exc)

    def _plan(self, group: list[Ticket]) -> list[_Prepared]:
        """The group's live requests as length-sorted batches, one role at a time."""
        now = time.monotonic()
        by_role: dict[Role, dict[str | bytes, _Item]] = {}
        for ticket in group:
            if ticket.abandoned or not ticket.future.set_running_or_notify_cancel():
                continue
            if ticket.expired(now):
                ticket._finish(None, DeadlineExceeded("deadline passed before encoding"))
                continue
            try:  # a request whose lengths cannot be measured fails alone
                lengths = self.encoder.input_lengths(ticket.inputs, ticket.role)
            except Exception as exc:  # noqa: BLE001
                ticket._finish(None, exc)
                continue
            items = by_role.setdefault(ticket.role, {})
            for pos, (value, length) in enumerate(zip(ticket.inputs, lengths, strict=True)):
                key = value if isinstance(value, str | bytes) else bytes(value)
                item = items.get(key)
                if item is None:
                    items[key] = _Item(value, length, [(ticket, pos)])
                else:
                    item.targets.append((ticket, pos))
        plans = []
        for role, items in by_role.items():
            ordered = sorted(items.values(), key=lambda it: it.length)
            for batch in cut_batches(
                [it.length for it in ordered], self.max_batch, self.batch_tokens
            ):
                plans.append(_Prepared([ordered[i] for i in batch], role))
        return plans

    def _prepare(self, prepared: _Prepared) -> None:
        now = time.monotonic()
        for item in prepared.items:
            for ticket, _ in item.targets:
                if not ticket.done and ticket.expired(now):
                    ticket._finish(None, DeadlineExceeded("deadline passed before encoding"))
        prepared.items = [item for item in prepared.items if item.wanted()]
        try:
            prepared.batch = self.encoder.preprocess(
                [item.value for item in prepared.items], prepared.role
            )
        except Exception as exc:  # noqa: BLE001 -- isolated on the model thread
            prepared.error = exc

    def _run_claimed(self, prepared: _Prepared) -> None:
        try:
            self._run(prepared)
        finally:
            with self._lock:
                self._active -= 1
                self._last_done = time.monotonic()
                self._lock.notify_all()

    def _hand(self, prepared: _Prepared | object) -> None:
        """Give a prepared batch to the model thread (waiting while one is already waiting)."""
        with self._lock:
            while self._ready is not None:
                self._lock.wait()
            self._ready = prepared
            self._lock.notify_all()

    # ------------------------------------------------------------------ model thread

    def _model_loop(self) -> None:
        while True:
            with self._lock:
                while self._ready is None:
                    self._lock.wait()
                prepared, self._ready = self._ready, None
                if prepared is not _STOP:
                    self._active += 1
                self._lock.notify_all()
            if prepared is _STOP:
                return
            assert isinstance(prepared, _Prepared)
            self._run_claimed(prepared)

    def _run(self, prepared: _Prepared) -> None:
        items = prepared.items
        if prepared.error is None:
            try:
                out = self.encoder.postprocess(self.encoder.forward(prepared.batch), prepared.batch)
            except Exception as exc:  # noqa: BLE001
                prepared.error = exc
        if prepared.error is not None:
            self._isolate(prepared)
            return
        with self._lock:
            self.batches += 1
            self.encoded += len(items)
        for row, item in enumerate(items):
            for ticket, pos in item.targets:
                ticket._fill([pos], out[row : row + 1])

    def _isolate(self, prepared: _Prepared) -> None:
        """A merged batch failed: encode each of its requests alone, so only a request
        whose own input fails gets an error."""
        log.info(
            "batcher %s: a batch of %d failed (%s); encoding its requests one by one",
            self.name,
            len(prepared.items),
            prepared.error,
        )
        tickets: dict[int, Ticket] = {}
        for item in prepared.items:
            for ticket, _ in item.targets:
                tickets.setdefault(id(ticket), ticket)
        for ticket in tickets.values():
            if ticket.done or ticket.abandoned:
                continue
            try:
                rows = self.encoder.encode(ticket.inputs, ticket.role)
            except BaseException as exc:  # noqa: BLE001 -- the caller gets it
                ticket._finish(None, exc)
            else:
                ticket._finish(rows, None)


class BatchedEncoder:
    """An encoder's view that sends every ``encode`` through its `EncodeBatcher`.

    What a linkage job or any other in-process caller holds instead of the encoder, so that
    it shares the batcher (and its fast path) with the server's requests.
    """

    def __init__(self, batcher: EncodeBatcher) -> None:
        self.batcher = batcher
        self.encoder = batcher.encoder
        self.spec = self.encoder.spec

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def modality(self) -> Modality:
        return self.encoder.modality

    def encode(self, inputs: Sequence[str | bytes], role: Role = "document") -> np.ndarray:
        return self.batcher.encode(inputs, role)

    def with_instruction(self, instruction: str) -> Encoder:
        return self.encoder.with_instruction(instruction)


@contextlib.contextmanager
def batching(encoder: Any, policy: BatchPolicy | None = None) -> Iterator[Any]:
    """``encoder`` behind an `EncodeBatcher` of its own while the block runs (closed after).

    For a caller that encodes much at once (a linkage job's embed stage): its texts are
    tokenised on the batcher's thread while the model runs the previous batch. Anything
    that is not an `Encoder` (already batched, a cache in front of one) is used as it is.
    """
    if not isinstance(encoder, Encoder):
        yield encoder
        return
    batcher = EncodeBatcher(encoder, policy, name=f"{encoder.spec.kind}-job")
    try:
        yield BatchedEncoder(batcher)
    finally:
        batcher.close()


__all__ = [
    "BatchPolicy",
    "BatchedEncoder",
    "batching",
    "EncodeBatcher",
    "Ticket",
]
