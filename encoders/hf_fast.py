"""CPU fast paths for encoder-only transformers: bf16 and int8 torch, ONNX Runtime fp32 and int8.

Every fast path replaces only the model call ``batch -> last_hidden_state``; tokenizing,
pooling and normalising stay in the encoder, so a fast path cannot change what is pooled.

- ``bf16``: a copy of the torch model in bfloat16. On CPUs with bf16 matrix units (AMX on
  Xeon 4th gen and later) oneDNN runs its matrix products several times faster than fp32
  (all-MiniLM-L6-v2 on 2 cores: 1.7-3.1x onnx-int8, cosine 0.9999 to fp32); without such
  units it can be slower than fp32, which is why ``auto`` times it first. oneDNN compiles
  a kernel per input shape, so this path pads each batch to a multiple of ``BF16_PAD``
  tokens.
- ``int8``: ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` (weights int8,
  activations quantised per batch at run time).
- ``onnx``: the loaded model exported once with ``torch.onnx.export`` and run by an
  ONNX Runtime ``InferenceSession`` on all available cores; ``onnx-int8`` additionally
  quantises the exported graph's weights with ``onnxruntime.quantization.quantize_dynamic``.

The wait policy of the OpenMP threads that torch runs on matters on a shared machine: the
default spins, which on a 2-core machine shared with other busy processes made the torch
paths 3-6x slower than ``OMP_WAIT_POLICY=PASSIVE``. The policy is read when torch is
imported, so the applications set it (the ``veclink`` command and the benchmarks, unless
the environment names one); the ONNX sessions are told not to spin (``allow_spinning``).

Exported files are cached under ``$VECLINK_CACHE_DIR`` (default ``~/.cache/veclink``) in a
directory keyed by the model's files, its config and the export settings; files are written
under a temporary name and renamed into place, so a crash or two processes exporting at
once never leave a half-written model behind. An export is checked against the torch model
on a batch of another shape before it is cached (a trace that baked in a shape fails that).

ONNX Runtime and onnx come with the ``fast`` extra; without it the ONNX backends raise
MissingDependency and ``auto`` falls back to the torch paths.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import platform
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from veclink._optional import require
from veclink.errors import FailedPrecondition

log = logging.getLogger(__name__)

CACHE_ENV = "VECLINK_CACHE_DIR"
#: bump when the exported graph changes for the same model (wrapper, opset, inputs)
EXPORT_FORMAT = 1
OPSET = 17
OUTPUT_NAME = "last_hidden_state"
#: the bf16 path pads a batch to a multiple of this many tokens (fewer shapes to compile)
BF16_PAD = 8

#: texts of different lengths and styles that every fast path must reproduce before
#: ``auto`` picks it (record-like strings, names, numbers, prose with padding around it)
PROBE_TEXTS = (
    "a domestic animal that barks",
    "the act of removing an outer covering, such as a shell or husk, from grain",
    "Sony Bravia KDL-40V4100 40-inch 1080p LCD HDTV black",
    "john smith 12 baker street springfield 4021",
    "Efficient query processing in distributed databases; J. Gray, A. Reuter; SIGMOD 1993",
    "x",
    "(botany) a plant having leaves that are divided into several leaflets arranged along an "
    "axis, as in ferns and some trees; often used in the description of hybrid cultivars",
    "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
    "EUR 1,299.00 incl. VAT -- ships in 3-5 days",
    "Müller-Lüdenscheidt GmbH, Großstraße 7, 80331 München",
    "an abnormal state in which development has stopped prematurely",
    "tel. +1 (555) 010-9999 ext 42",
)


def cache_dir() -> Path:
    """Where exported models live: ``$VECLINK_CACHE_DIR`` or ``~/.cache/veclink``, read per call."""
    root = os.environ.get(CACHE_ENV) or os.path.join("~", ".cache", "veclink")
    return Path(root).expanduser()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def to_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """A bfloat16 copy of ``model`` (the fp32 model is left as it is)."""
    return copy.deepcopy(model).to(torch.bfloat16).eval()


def quantize_int8(model: torch.nn.Module, layers: str) -> torch.nn.Module:
    """A copy of ``model`` whose chosen Linear layers run with int8 weights (dynamic).

    Args:
        model: the fp32 model.
        layers: ``attention`` (the square hidden x hidden projections: query, key, value
            and attention output) or ``all`` (every Linear layer).
    """
    names = {name for name, module in model.named_modules() if _quantizable(module, layers)}
    qconfig = torch.ao.quantization.default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are announced as deprecated
        return torch.ao.quantization.quantize_dynamic(
            model, {name: qconfig for name in names}, dtype=torch.qint8
        ).eval()


def _quantizable(module: torch.nn.Module, layers: str) -> bool:
    # The feed-forward layers carry the residual stream's outlier features, which int8
    # per-tensor activation scales clip (Bondarenko et al. 2021, "Understanding and
    # overcoming the challenges of efficient transformer quantization"); the attention
    # projections are the square ones.
    if not isinstance(module, torch.nn.Linear):
        return False
    return layers == "all" or module.in_features == module.out_features


class _HiddenStates(torch.nn.Module):
    """Export wrapper: named int64 inputs in, the last hidden state out.

    The padding mask is turned into an additive 4-D mask here, because transformers'
    own mask construction branches on Python values that a trace would freeze to the
    example's shape; a 4-D mask is passed through as is.
    """

    def __init__(self, model: torch.nn.Module, input_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        kwargs = dict(zip(self.input_names, tensors, strict=True))
        mask = kwargs["attention_mask"][:, None, None, :].to(torch.float32)
        kwargs["attention_mask"] = (1.0 - mask) * torch.finfo(torch.float32).min
        return self.model(**kwargs).last_hidden_state


class OnnxRunner:
    """Runs an exported encoder with ONNX Runtime on the CPU, one session per file."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        ort = require("onnxruntime", "fast")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initialisers are noise
        # idle workers sleep instead of spinning: on a machine whose cores are busy with other
        # processes spinning workers take their time slices from the ones with work
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = tuple(i.name for i in self.session.get_inputs())

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {name: batch[name].cpu().numpy().astype(np.int64) for name in self.input_names}
        (hidden,) = self.session.run([OUTPUT_NAME], feed)
        return torch.from_numpy(hidden)


def model_key(model: torch.nn.Module, model_path: str, input_names: tuple[str, ...]) -> str:
    """Cache key of an export: the model's files (names, sizes, mtimes), config and settings."""
    h = hashlib.sha256()
    parts: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "opset": OPSET,
        "torch": torch.__version__,
        "inputs": list(input_names),
        "config": model.config.to_json_string(use_diff=False),
    }
    path = Path(model_path)
    if path.is_dir():
        parts["path"] = str(path.resolve())
        parts["files"] = sorted(
            (f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file()
        )
    else:  # a hub id resolved from the user's cache: the commit names the weights
        parts["path"] = model_path
        parts["commit"] = getattr(model.config, "_commit_hash", None)
    h.update(json.dumps(parts, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def onnx_file(
    model: torch.nn.Module,
    model_path: str,
    example: dict[str, torch.Tensor],
    check: dict[str, torch.Tensor],
    *,
    int8_layers: str | None,
) -> Path:
    """The cached ONNX export of ``model`` (fp32 or int8 weights), exporting it if needed.

    Args:
        model: the fp32 model on the CPU, in eval mode.
        model_path: where it was loaded from (part of the cache key).
        example: a tokenized batch (with padding) to trace the export with.
        check: a tokenized batch of another shape; the fp32 export must reproduce the
            torch model's hidden states on it before it is cached.
        int8_layers: ``None`` for the fp32 file; else ``attention`` or ``all``: the file
            (made from the fp32 one) whose attention projections or all MatMul weights
            are int8 (see ``quantize_int8``).

    Raises:
        MissingDependency: onnx or onnxruntime is not installed (extra ``fast``).
        FailedPrecondition: the export does not reproduce the model.
    """
    require("onnx", "fast")
    require("onnxruntime", "fast")
    input_names = tuple(example)
    folder = cache_dir() / "onnx" / model_key(model, model_path, input_names)
    fp32 = folder / "model.onnx"
    if not fp32.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FailedPrecondition(
                f"cannot create the export cache {folder} ({exc}); set {CACHE_ENV}",
                field="spec.backend",
            ) from exc
        _atomic_write(fp32, lambda tmp: _export(model, example, tmp))
        try:
            _check_export(fp32, model, check)
        except FailedPrecondition:
            fp32.unlink(missing_ok=True)
            raise
    if int8_layers is None:
        return fp32
    int8 = folder / f"model-int8-{int8_layers}.onnx"
    if not int8.exists():
        _atomic_write(int8, lambda tmp: _quantize_onnx(fp32, tmp, int8_layers))
    return int8


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _export(model: torch.nn.Module, example: dict[str, torch.Tensor], path: Path) -> None:
    names = tuple(example)
    wrapper = _HiddenStates(model, names).eval()
    axes = {name: {0: "batch", 1: "tokens"} for name in (*names, OUTPUT_NAME)}
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter warns about itself and about traced Python bools (the
        # 4-D mask avoids the ones that matter; the export is checked on another shape)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            tuple(example[n].cpu() for n in names),
            str(path),
            input_names=list(names),
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _check_export(path: Path, model: torch.nn.Module, check: dict[str, torch.Tensor]) -> None:
    runner = OnnxRunner(path, threads=1)
    got = runner(check).numpy()
    with torch.inference_mode():
        want = model(**{k: v.cpu() for k, v in check.items()}).last_hidden_state.float().numpy()
    keep = check["attention_mask"].cpu().numpy().astype(bool)
    err = float(np.abs(got - want)[keep].max())
    scale = float(np.abs(want[keep]).max())
    if not err <= 1e-3 * max(scale, 1.0):
        raise FailedPrecondition(
            f"the ONNX export does not reproduce the model (max abs difference {err:.3g} on "
            "a batch of another shape); use backend 'torch' or 'int8'",
            field="spec.backend",
        )


def _quantize_onnx(source: Path, target: Path, layers: str) -> None:
    onnx = require("onnx", "fast")
    quantization = require("onnxruntime.quantization", "fast")
    graph = onnx.load(str(source), load_external_data=False).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    # the same rule as quantize_int8: only square weights unless every layer is asked for
    exclude = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and layers != "all"
        and len(shape := shapes.get(node.input[1], ())) == 2
        and shape[0] != shape[1]
    ]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it warns "consider pre-processing" on the root logger
    try:
        quantization.quantize_dynamic(
            str(source),
            str(target),
            weight_type=quantization.QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=exclude,
            extra_options={"MatMulConstBOnly": True},
        )
    finally:
        root.setLevel(level)


def machine_id() -> dict[str, Any]:
    """What a timing depends on besides the model: the CPU (model name, flags) and its cores."""
    cpu: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                name = name.strip()
                if name in ("model name", "flags") and name not in cpu:
                    cpu[name] = value.strip()
                if len(cpu) == 2:
                    break
    except OSError:  # not on Linux
        pass
    return {
        "machine": platform.machine(),
        "processor": cpu.get("model name") or platform.processor(),
        "flags": hashlib.sha256(cpu.get("flags", "").encode()).hexdigest()[:16],
        "cores": available_cores(),
    }


def choice_file(model_key: str, settings: dict[str, Any]) -> Path:
    """Where ``auto``'s decision for one model on this machine is kept.

    Args:
        model_key: ``model_key`` of the model (its files, config and torch version).
        settings: everything else the decision depends on (candidates, the cosine bar,
            library versions); the machine's identity is added here.
    """
    parts = {"format": EXPORT_FORMAT, "model": model_key, "machine": machine_id(), **settings}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    return cache_dir() / "auto" / f"{digest.hexdigest()[:32]}.json"


def read_choice(path: Path) -> dict[str, Any] | None:
    """The decision stored at ``path``, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("backend"), str) else None


def write_choice(path: Path, data: dict[str, Any]) -> None:
    """Store a decision atomically; a cache that cannot be written is only logged."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, sort_keys=True)))
    except OSError as exc:
        log.info("cannot store the backend decision in %s (%s)", path, exc)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest per-row cosine between two matrices of the same shape."""
    na = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.min(np.sum(a * b, axis=1) / np.maximum(na, 1e-12)))
