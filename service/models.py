"""Served models: names from the settings mapped to encoder specs, loaded lazily and shared."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from veclink.encoders import Encoder, EncoderSpec, load_encoder, spec_from_dict

from veclink.errors import InvalidArgument, NotFound

log = logging.getLogger(__name__)


class ModelRegistry:
    """Maps served model names to encoders; one loaded encoder per distinct spec."""

    def __init__(
        self,
        models: Mapping[str, Mapping[str, Any]],
        default: str,
        loader: Callable[[EncoderSpec], Encoder] | None = None,
    ) -> None:
        """``loader`` loads a spec's encoder (default: in this process; cluster mode passes
        one that starts encoder replicas on Ray)."""
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
        return self.for_spec(self.spec(name))

    def for_spec(self, spec: EncoderSpec | Mapping[str, Any]) -> Encoder:
        """The encoder of a spec (e.g. the one a collection was created with), loaded once."""
        spec = spec_from_dict(dict(spec) if isinstance(spec, Mapping) else spec)
        key = spec.to_json()
        with self._lock:
            encoder = self._loaded.get(key)
            if encoder is None:
                log.info("loading encoder %s", key)
                encoder = self._loader(spec)
                self._loaded[key] = encoder
            return encoder

    def close(self) -> None:
        """Release encoders that hold processes (cluster mode's replicas); idempotent."""
        with self._lock:
            loaded, self._loaded = list(self._loaded.values()), {}
        for encoder in loaded:
            close = getattr(encoder, "close", None)
            if close is not None:
                close()
