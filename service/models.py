"""Served models: names from the settings mapped to encoder specs, loaded lazily and shared."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from veclink.encoders import Encoder, EncoderSpec, load_encoder, spec_from_dict
from veclink.encoders.batcher import BatchedEncoder, BatchPolicy, EncodeBatcher

from veclink.errors import InvalidArgument, NotFound

log = logging.getLogger(__name__)

DEFAULT_BATCHING = BatchPolicy()


class ModelRegistry:
    """Maps served model names to encoders; one loaded encoder per distinct spec, and one
    `EncodeBatcher` in front of each, shared by every request that encodes with it.

    Args:
        models: served name -> encoder spec.
        default: the name requests without one get.
        batching: how the batchers merge requests; None: no batchers (every caller runs
            its own ``encode``).
        loader: loads a spec's encoder (default: in this process; cluster mode passes one
            that starts encoder replicas on Ray, which batch for themselves: no batchers).
    """

    def __init__(
        self,
        models: Mapping[str, Mapping[str, Any]],
        default: str,
        batching: BatchPolicy | None = DEFAULT_BATCHING,
        loader: Callable[[EncoderSpec], Encoder] | None = None,
    ) -> None:
        problems = []
        self._specs: dict[str, EncoderSpec] = {}
        for name, spec in models.items():
            try:
                self._specs[name] = spec_from_dict(dict(spec))
            except InvalidArgument as exc:
                problems.append(f"models.{name}: {exc}")
        if problems:
            raise InvalidArgument("; ".join(problems), field="models")
        if default not in self._specs:
            raise InvalidArgument(
                f"default model {default!r} is not among the served models "
                f"({', '.join(sorted(self._specs)) or 'none'})",
                field="models.default",
            )
        self.default = default
        self._loaded: dict[str, Encoder] = {}
        self._loader = loader or load_encoder
        #: served name -> its loaded encoder (filled by ``get``)
        self._by_name: dict[str, Encoder] = {}
        # replicas (a loader) batch in their own front-end: no second batcher before them
        self.batching = batching if loader is None else None
        #: id(encoder) -> its batcher (encoders are never unloaded, so ids stay theirs)
        self._batchers: dict[int, EncodeBatcher] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self._specs)

    def spec(self, name: str) -> EncoderSpec:
        name = name or self.default
        try:
            return self._specs[name]
        except KeyError:
            raise NotFound(
                f"model {name!r} is not served; served models: {', '.join(self.names())}",
                field="model",
            ) from None

    def get(self, name: str) -> Encoder:
        """The encoder of a served model name ('' = default)."""
        # per request on the event loop: a dict lookup once loaded (no spec validation)
        encoder = self._by_name.get(name or self.default)
        if encoder is None:
            encoder = self.for_spec(self.spec(name))
            self._by_name[name or self.default] = encoder
        return encoder

    def for_spec(self, spec: EncoderSpec | Mapping[str, Any]) -> Encoder:
        """The encoder of a spec (e.g. the one a collection was created with), loaded once."""
        spec = spec_from_dict(dict(spec) if isinstance(spec, Mapping) else spec)
        key = _same_device_key(spec)
        with self._lock:
            encoder = self._loaded.get(key)
            if encoder is None:
                log.info("loading encoder %s", key)
                encoder = self._loader(spec)
                self._loaded[key] = encoder
            return encoder

    def loaded(self, name: str) -> bool:
        """Whether the served model ``name`` ('' = default) is loaded (a lookup only).

        Raises:
            NotFound: ``name`` is not served.
        """
        # no lock: it is held while a model loads (seconds), and this runs on the event loop
        self.spec(name)
        return (name or self.default) in self._by_name

    def batcher_of(self, encoder: Encoder) -> EncodeBatcher | None:
        """The batcher in front of a loaded encoder (started on first use, again after
        `close`); None for other encoders (an instruction variant) or with batching off."""
        if self.batching is None:
            return None
        with self._lock:
            batcher = self._batchers.get(id(encoder))
            if batcher is None and any(e is encoder for e in self._loaded.values()):
                name = f"{encoder.spec.kind}-{len(self._batchers)}"
                batcher = EncodeBatcher(encoder, self.batching, name=name)
                self._batchers[id(encoder)] = batcher
            return batcher

    def batched(self, spec: EncoderSpec | Mapping[str, Any]) -> Any:
        """What in-process callers (linkage jobs) encode with: the spec's encoder behind its
        batcher, or the encoder itself with batching off."""
        encoder = self.for_spec(spec)
        batcher = self.batcher_of(encoder)
        return encoder if batcher is None else BatchedEncoder(batcher)

    def close(self) -> None:
        """Stop the batchers (after what they hold is encoded; a later encode starts its
        model's batcher again) and release encoders that hold processes (cluster mode's
        replicas); idempotent."""
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), {}
            held = [e for e in self._loaded.values() if getattr(e, "close", None) is not None]
            if held:
                self._loaded, self._by_name = {}, {}
        for batcher in batchers:
            batcher.close()
        for encoder in held:
            encoder.close()


def _same_device_key(spec: EncoderSpec) -> str:
    """A spec's loading key, with ``device: auto`` written as the device it resolves to here,
    so a collection stored with ``device: cpu`` (before ``auto`` was the default) shares the
    served ``auto`` model's encoder on a CPU machine instead of loading a second copy."""
    device = getattr(spec, "device", None)
    if device == "auto":
        from veclink.encoders.torch_utils import resolve_device  # torch: loaded with models

        spec = dataclasses.replace(spec, device=resolve_device("auto").type)
    return spec.to_json()
