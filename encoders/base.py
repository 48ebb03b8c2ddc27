"""The `Encoder` contract, frozen `EncoderSpec`s and the kind registry.

Every encoder turns a batch of inputs (texts, or images as encoded bytes) into a float32
matrix ``(n, dim)``; nothing else is ever returned. Execution is split into three stages
so a batcher can overlap CPU and device work:

- ``preprocess`` (CPU): tokenize / decode images, produce a model-ready batch;
- ``forward`` (device): run the model;
- ``postprocess`` (CPU): pool, normalise, convert to numpy.

A spec names a model completely and round-trips through JSON; ``load_encoder`` builds the
encoder a spec names through the registry.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np

from veclink.errors import InvalidArgument
from veclink.validation import Problems, build, field_problems

Role = Literal["query", "document"]
ROLES: tuple[str, ...] = ("query", "document")
Modality = Literal["text", "image", "multimodal"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EncoderSpec:
    """Base of every encoder spec. Subclasses are frozen kw-only dataclasses per kind."""

    #: registry key of the encoder kind, e.g. ``"hf-text"``
    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"kind": self.kind, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def validate(self) -> list[str]:
        """Return every problem with this spec (empty when valid). Subclasses extend."""
        return []


class Encoder(ABC):
    """Turns inputs into float32 vectors ``(n, dim)``."""

    spec: EncoderSpec
    #: most inputs per forward pass
    batch_size: int = 32
    #: most padded tokens (rows x longest row, in ``input_lengths`` units) per forward
    #: pass; ``None`` or 0: only ``batch_size`` limits a batch
    batch_tokens: int | None = None

    @property
    @abstractmethod
    def dim(self) -> int:
        """Output dimension."""

    @property
    @abstractmethod
    def modality(self) -> Modality:
        """What ``encode`` accepts: ``text`` (str), ``image`` (bytes) or ``multimodal`` (both)."""

    @abstractmethod
    def preprocess(self, inputs: Sequence[str | bytes], role: Role) -> Any:
        """CPU stage: turn raw inputs into a model-ready batch."""

    @abstractmethod
    def forward(self, batch: Any) -> Any:
        """Device stage: run the model on a preprocessed batch."""

    @abstractmethod
    def postprocess(self, output: Any, batch: Any) -> np.ndarray:
        """CPU stage: pool/normalise the model output into float32 ``(len(batch), dim)``."""

    def with_instruction(self, instruction: str) -> Encoder:
        """An encoder that prepends ``instruction`` to queries (sharing this one's weights).

        Instruction-tuned encoders override this; the others refuse.
        """
        raise InvalidArgument(
            f"encoder kind {self.spec.kind!r} does not take instructions", field="instruction"
        )

    def check_inputs(self, inputs: Sequence[str | bytes]) -> None:
        """Raise InvalidArgument naming the first bad input (index in ``inputs``)."""
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                if self.modality == "image":
                    raise InvalidArgument(
                        f"inputs[{i}] is text but this encoder only accepts images",
                        field=f"inputs[{i}]",
                    )
                if not item.strip():
                    raise InvalidArgument(f"inputs[{i}] is empty text", field=f"inputs[{i}]")
            elif isinstance(item, bytes | bytearray | memoryview):
                if self.modality == "text":
                    raise InvalidArgument(
                        f"inputs[{i}] is an image but this encoder only accepts text",
                        field=f"inputs[{i}]",
                    )
                if len(item) == 0:
                    raise InvalidArgument(f"inputs[{i}] is an empty image", field=f"inputs[{i}]")
            else:
                raise InvalidArgument(
                    f"inputs[{i}] must be str or bytes, got {type(item).__name__}",
                    field=f"inputs[{i}]",
                )

    def input_lengths(self, inputs: Sequence[str | bytes], role: Role) -> list[int]:
        """Cost of each input in batch-budget units (tokens for text models).

        The default is the length in characters or bytes; tokenizing encoders override it
        so that ``batch_tokens`` counts real tokens.
        """
        return [len(item) for item in inputs]

    def encode(self, inputs: Sequence[str | bytes], role: Role = "document") -> np.ndarray:
        """Encode ``inputs`` into float32 ``(len(inputs), dim)``.

        Identical inputs are encoded once. Inputs are ordered by length before batching
        (less padding) and cut into batches of at most ``batch_size`` inputs and, when
        ``batch_tokens`` is set, at most that many padded tokens (rows x longest row); the
        rows are put back in input order, so the result does not depend on batch
        composition beyond floating-point noise.
        """
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {ROLES}; got {role!r}", field="role")
        inputs = list(inputs)
        self.check_inputs(inputs)
        if not inputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique, where = _dedupe(inputs)
        out = np.empty((len(unique), self.dim), dtype=np.float32)
        for chunk in self._batches(unique, role):
            batch = self.preprocess([unique[i] for i in chunk], role)
            out[chunk] = self.postprocess(self.forward(batch), batch)
        return out if len(unique) == len(inputs) else out[where]

    def _batches(self, inputs: list[str | bytes], role: Role) -> list[list[int]]:
        lengths = self.input_lengths(inputs, role)
        order = sorted(range(len(inputs)), key=lengths.__getitem__)
        runs = cut_batches([lengths[i] for i in order], self.batch_size, self.batch_tokens or 0)
        return [[order[j] for j in run] for run in runs]


def cut_batches(lengths: list[int], max_rows: int, budget: int) -> list[list[int]]:
    """Consecutive runs of ascending ``lengths`` (positions): at most ``max_rows`` each and,
    with a ``budget``, at most that many padded tokens (rows x the run's longest, which is
    its newest row since the lengths ascend)."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i, length in enumerate(lengths):
        over = budget > 0 and (len(current) + 1) * max(length, 1) > budget
        if current and (len(current) >= max_rows or over):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _dedupe(inputs: list[str | bytes]) -> tuple[list[str | bytes], np.ndarray]:
    """The distinct inputs (first occurrences, in order) and each input's row among them."""
    first: dict[str | bytes, int] = {}
    unique: list[str | bytes] = []
    where = np.empty(len(inputs), dtype=np.int64)
    for n, item in enumerate(inputs):
        key = item if isinstance(item, str | bytes) else bytes(item)
        row = first.get(key)
        if row is None:
            row = first[key] = len(unique)
            unique.append(item)
        where[n] = row
    return unique, where


# ---------------------------------------------------------------------------- registry

_SPECS: dict[str, type[EncoderSpec]] = {}
#: an encoder class, or the ``"module:Class"`` path it is imported from on first use
_ENCODERS: dict[str, Callable[[Any], Encoder] | str] = {}

S = TypeVar("S", bound=EncoderSpec)
E = TypeVar("E", bound=type)


def _add_kind(spec_cls: type[EncoderSpec], encoder: Callable[[Any], Encoder] | str) -> None:
    kind = spec_cls.kind
    if not kind:
        raise ValueError(f"{spec_cls.__name__} has no kind")
    if kind in _SPECS:
        raise ValueError(f"encoder kind {kind!r} is already registered")
    _SPECS[kind] = spec_cls
    _ENCODERS[kind] = encoder


def register_encoder(spec_cls: type[EncoderSpec]) -> Callable[[E], E]:
    """Class decorator registering an encoder class for ``spec_cls.kind``.

    Raises:
        ValueError: if the kind is empty or already registered.
    """

    def deco(cls: E) -> E:
        _add_kind(spec_cls, cls)
        return cls

    return deco


def register_spec(spec_cls: type[EncoderSpec], encoder: str) -> None:
    """Register ``spec_cls.kind`` with its encoder class named by ``"module:Class"``.

    The module is imported when ``load_encoder`` first builds that kind, so specs can be
    read and validated without importing the model libraries the encoder needs.

    Raises:
        ValueError: if the kind is empty or already registered.
    """
    _add_kind(spec_cls, encoder)


def _encoder_class(kind: str) -> Callable[[Any], Encoder]:
    encoder = _ENCODERS[kind]
    if isinstance(encoder, str):
        module, _, name = encoder.partition(":")
        encoder = getattr(importlib.import_module(module), name)
        _ENCODERS[kind] = encoder
    return encoder


def registered_kinds() -> list[str]:
    return sorted(_SPECS)


def spec_from_dict(data: dict[str, Any] | EncoderSpec) -> EncoderSpec:
    """Build and validate a spec from its dict form; reports every problem at once.

    Field types follow the one policy of `veclink.validation` (``batch_size: 64.0`` and
    ``normalize: 1`` are refused), then each kind checks its values (`EncoderSpec.validate`).
    """
    problems = Problems()
    if isinstance(data, EncoderSpec):
        typed = field_problems(data, "spec")
        problems.extend(typed)
        spec: EncoderSpec | None = None if typed else data
    else:
        if not isinstance(data, dict):
            raise InvalidArgument("encoder spec must be a JSON object", field="spec")
        kind = data.get("kind")
        if kind not in _SPECS:
            raise InvalidArgument(
                f"unknown encoder kind {kind!r}; known kinds: {', '.join(registered_kinds())}",
                field="spec.kind",
            )
        fields = {k: v for k, v in data.items() if k != "kind"}
        spec = build(_SPECS[kind], fields, "spec", problems)
    if spec is not None:  # values are checked once their types are right
        problems.extend(spec.validate())
    problems.raise_if_any("", "spec")
    assert spec is not None  # None only with a problem recorded
    return spec


def spec_from_json(text: str) -> EncoderSpec:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"encoder spec is not valid JSON: {exc}", field="spec") from exc
    return spec_from_dict(data)


def load_encoder(spec: EncoderSpec | dict[str, Any]) -> Encoder:
    """Build the encoder that ``spec`` names (a spec object or its JSON dict)."""
    spec = spec_from_dict(spec)
    return _encoder_class(spec.kind)(spec)
