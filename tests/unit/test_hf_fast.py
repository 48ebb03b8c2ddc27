"""CPU fast paths of hf-text (int8, ONNX, auto), token-budget batching and dedupe.

Mechanics run on a tiny random BERT built from a config; the accuracy bar (cosine >= 0.99
per text to the fp32 torch vectors) is checked on the real all-MiniLM-L6-v2 and real
WordNet glosses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from veclink.encoders import HFTextSpec, hf_fast, load_encoder, spec_from_dict, spec_from_json
from veclink.encoders.base import Encoder, Role

from tests.fixtures.tiny_models import save_tiny_bert
from veclink.errors import FailedPrecondition, InvalidArgument, MissingDependency

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "the cat sat on the mat",
    "a much longer sentence that forces a lot of padding in its batch of short ones",
    "x",
    "sony tv black",
    "the cat sat on the mat",
    "john smith springfield",
]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(hf_fast.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ---------------------------------------------------------------------------- spec


def test_spec_round_trip_with_fast_path_fields() -> None:
    spec = HFTextSpec(backend="onnx-int8", int8_layers="all", max_length=128, batch_tokens=4096)
    assert spec_from_json(spec.to_json()) == spec


def test_spec_errors_listed_together() -> None:
    with pytest.raises(InvalidArgument) as info:
        spec_from_dict(
            {"kind": "hf-text", "backend": "fp8", "int8_layers": "some", "batch_tokens": -1}
        )
    msg = str(info.value)
    assert "spec.backend" in msg and "spec.int8_layers" in msg and "spec.batch_tokens" in msg
    assert "onnx-int8" in msg  # the valid options are listed
    with pytest.raises(InvalidArgument) as info:
        spec_from_dict({"kind": "hf-text", "backend": "onnx", "dtype": "fp16", "device": "cuda"})
    assert "needs dtype fp32" in str(info.value) and "CPU only" in str(info.value)


# ---------------------------------------------------------------------------- batching


class _Recorder(Encoder):
    """Vectors from character counts, recording every batch it is given."""

    def __init__(self, batch_size: int, batch_tokens: int | None) -> None:
        self.batch_size, self.batch_tokens = batch_size, batch_tokens
        self.batches: list[list[str]] = []

    @property
    def dim(self) -> int:
        return 26

    @property
    def modality(self) -> Any:
        return "text"

    def preprocess(self, inputs: Sequence[str | bytes], role: Role) -> list[str]:
        self.batches.append([str(t) for t in inputs])
        return [str(t) for t in inputs]

    def forward(self, batch: list[str]) -> np.ndarray:
        return np.array(
            [[t.count(chr(97 + c)) for c in range(26)] for t in batch], dtype=np.float32
        )

    def postprocess(self, output: np.ndarray, batch: list[str]) -> np.ndarray:
        return output


def test_duplicates_are_encoded_once_and_rows_keep_input_order() -> None:
    enc = _Recorder(batch_size=2, batch_tokens=None)
    out = enc.encode(TEXTS)
    seen = [t for b in enc.batches for t in b]
    assert sorted(seen) == sorted(set(TEXTS))
    np.testing.assert_array_equal(out, enc.forward(TEXTS))


def test_token_budget_bounds_padded_batch_size() -> None:
    texts = ["ab" * n for n in (1, 1, 2, 3, 3, 20, 40, 2, 1)] + ["z" * 200]
    enc = _Recorder(batch_size=4, batch_tokens=60)
    out = enc.encode(texts)
    for batch in enc.batches:
        assert len(batch) <= 4
        padded = len(batch) * max(len(t) for t in batch)
        assert padded <= 60 or len(batch) == 1  # an input over the budget goes alone
    assert sum(len(b) for b in enc.batches) == len(set(texts))
    np.testing.assert_array_equal(out, enc.forward(texts))


def test_token_budget_off_uses_batch_size_only() -> None:
    enc = _Recorder(batch_size=3, batch_tokens=0)
    enc.encode([f"t{'a' * i}" for i in range(7)])
    assert [len(b) for b in enc.batches] == [3, 3, 1]


# ---------------------------------------------------------------------------- backends


@pytest.fixture(scope="module")
def tiny_reference(tiny_bert: str) -> np.ndarray:
    return load_encoder({"kind": "hf-text", "model": tiny_bert}).encode(TEXTS)


# int8 activations are quantised with one scale per batch tensor, so a row's vector
# depends a little on its batch: the int8 paths are batch-invariant only to ~1e-3.
@pytest.mark.parametrize(
    ("backend", "layers", "floor", "invariance"),
    [
        ("onnx", "attention", 0.9999, 0.99999),
        ("bf16", "attention", 0.99, 0.999),
        ("int8", "attention", 0.99, 0.995),
        ("int8", "all", 0.98, 0.995),
        ("onnx-int8", "attention", 0.99, 0.995),
        ("onnx-int8", "all", 0.98, 0.995),
    ],
)
def test_backend_pools_like_torch(
    tiny_bert: str,
    tiny_reference: np.ndarray,
    backend: str,
    layers: str,
    floor: float,
    invariance: float,
) -> None:
    spec = {
        "kind": "hf-text",
        "model": tiny_bert,
        "backend": backend,
        "int8_layers": layers,
        "batch_size": 2,
    }
    enc = load_encoder(spec)
    assert enc.backend == backend and enc.model is None  # the fp32 copy is released
    got = enc.encode(TEXTS)
    assert got.shape == tiny_reference.shape and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    cosine = _cosines(got, tiny_reference)
    assert cosine.min() >= floor
    alone = enc.encode([TEXTS[3]])
    assert _cosines(alone, got[3:4])[0] >= invariance


def test_bf16_pads_batches_to_a_multiple_of_eight_tokens(tiny_bert: str) -> None:
    enc = load_encoder({"kind": "hf-text", "model": tiny_bert, "backend": "bf16"})
    for texts in (TEXTS[:1], TEXTS[2:4], TEXTS):
        batch = enc.preprocess(texts, "document")
        assert batch["input_ids"].shape[1] % hf_fast.BF16_PAD == 0
    fp32 = load_encoder({"kind": "hf-text", "model": tiny_bert})
    assert fp32.preprocess(TEXTS[2:3], "document")["input_ids"].shape[1] < hf_fast.BF16_PAD


def test_int8_quantizes_only_the_chosen_layers(tiny_bert: str) -> None:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_bert).eval()
    attention = hf_fast.quantize_int8(model, "attention")
    fp32 = {name for name, m in attention.named_modules() if type(m) is torch.nn.Linear}
    assert "encoder.layer.0.attention.self.query" not in fp32
    assert "encoder.layer.0.attention.output.dense" not in fp32
    assert "encoder.layer.0.intermediate.dense" in fp32
    everything = hf_fast.quantize_int8(model, "all")
    assert not any(type(m) is torch.nn.Linear for m in everything.modules())


def test_onnx_export_is_cached_and_written_atomically(
    tiny_bert: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_encoder({"kind": "hf-text", "model": tiny_bert, "backend": "onnx-int8"})
    files = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert files == ["model-int8-attention.onnx", "model.onnx"]  # no temporary left over

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("exported again despite the cache")

    monkeypatch.setattr(hf_fast, "_export", refuse)
    monkeypatch.setattr(hf_fast, "_quantize_onnx", refuse)
    again = load_encoder({"kind": "hf-text", "model": tiny_bert, "backend": "onnx-int8"})
    np.testing.assert_allclose(again.encode(TEXTS), first.encode(TEXTS), atol=1e-6)
    # another max_length changes nothing in the graph; other int8 layers make a new file
    monkeypatch.undo()
    monkeypatch.setenv(hf_fast.CACHE_ENV, str(cache))
    load_encoder(
        {"kind": "hf-text", "model": tiny_bert, "backend": "onnx-int8", "int8_layers": "all"}
    )
    assert len(list(cache.rglob("model-int8-all.onnx"))) == 1


def test_an_export_that_does_not_reproduce_the_model_is_refused(
    tiny_bert: str, tmp_path: Path
) -> None:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    batch = dict(tok(TEXTS[:2], padding=True, return_tensors="pt"))
    hf_fast._export(model, batch, tmp_path / "m.onnx")
    check = dict(tok(TEXTS[2:], padding=True, return_tensors="pt"))
    hf_fast._check_export(tmp_path / "m.onnx", model, check)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    with pytest.raises(FailedPrecondition) as info:
        hf_fast._check_export(tmp_path / "m.onnx", model, batch)
    assert info.value.field == "spec.backend"


def _without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    real = hf_fast.require

    def require(module: str, extra: str) -> Any:
        if module.startswith(("onnx", "onnxruntime")):
            raise MissingDependency(f"{module!r} is not installed; pip install 'veclink[{extra}]'")
        return real(module, extra)

    monkeypatch.setattr(hf_fast, "require", require)


def test_without_the_fast_extra(tiny_bert: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _without_onnxruntime(monkeypatch)
    with pytest.raises(MissingDependency, match=r"veclink\[fast\]"):
        load_encoder({"kind": "hf-text", "model": tiny_bert, "backend": "onnx"})
    auto = load_encoder({"kind": "hf-text", "model": tiny_bert, "backend": "auto"})
    assert auto.backend in ("bf16", "int8", "torch")
    assert auto.encode(TEXTS).shape == (len(TEXTS), 32)


def _timings(monkeypatch: pytest.MonkeyPatch, seconds: dict[str, float]) -> list[str]:
    """Make ``auto``'s timing deterministic; returns the backends it timed, in order."""
    import veclink.encoders.hf_text as hf_text

    timed: list[str] = []

    def fake(self: Any, backend: str) -> float:
        timed.append(backend)
        return seconds[backend]

    monkeypatch.setattr(hf_text.HFTextEncoder, "_seconds", fake)
    return timed


def test_auto_takes_the_fastest_path_that_reproduces_the_model(
    tiny_bert: str, tiny_reference: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import veclink.encoders.hf_text as hf_text

    spec = {"kind": "hf-text", "model": tiny_bert, "int8_layers": "all"}
    int8 = load_encoder({**spec, "backend": "int8"}).encode(list(hf_fast.PROBE_TEXTS))
    reference = load_encoder(spec).encode(list(hf_fast.PROBE_TEXTS))
    worst = hf_fast.min_cosine(int8, reference)
    assert worst < 0.99999
    monkeypatch.setattr(hf_text, "AUTO_ORDER", ("int8", "onnx", "bf16"))
    monkeypatch.setattr(hf_text, "AUTO_MIN_COSINE", (worst + 1.0) / 2)  # int8 falls short
    timed = _timings(monkeypatch, {"torch": 3.0, "int8": 0.1, "onnx": 1.0, "bf16": 2.0})
    auto = load_encoder({**spec, "backend": "auto"})
    # int8, the fastest, was refused by the cosine check before it was timed
    assert auto.backend == "onnx" and timed == ["torch", "onnx", "bf16"]
    monkeypatch.setattr(hf_text, "AUTO_MIN_COSINE", 1.01)  # nothing is close enough
    auto = load_encoder({**spec, "backend": "auto"})
    assert auto.backend == "torch" and auto.model is not None
    np.testing.assert_allclose(auto.encode(TEXTS), tiny_reference, atol=1e-6)


def test_auto_refuses_a_fast_path_that_does_not_reproduce_the_model(
    tiny_bert: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import veclink.encoders.hf_text as hf_text

    real = hf_text.HFTextEncoder._fast_runner

    def broken(self: Any, backend: str) -> Any:
        run = real(self, backend)
        if backend != "bf16":
            return run
        # a bad quantisation: the hidden states of another model of the same shape
        return lambda batch: torch.roll(run(batch).float(), shifts=1, dims=-1)

    monkeypatch.setattr(hf_text.HFTextEncoder, "_fast_runner", broken)
    monkeypatch.setattr(hf_text, "AUTO_ORDER", ("bf16", "onnx"))
    _timings(monkeypatch, {"torch": 3.0, "bf16": 0.1, "onnx": 1.0})
    auto = load_encoder({"kind": "hf-text", "model": tiny_bert, "backend": "auto"})
    assert auto.backend == "onnx"
    stored = [hf_fast.read_choice(p) for p in hf_fast.cache_dir().glob("auto/*.json")]
    assert [c["backend"] for c in stored if c] == ["onnx"]
    assert stored[0]["min_cosine"]["bf16"] < 0.99  # recorded, with the reason it lost


def test_auto_decides_once_and_reuses_the_decision(
    tiny_bert: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import veclink.encoders.hf_text as hf_text

    monkeypatch.setattr(hf_text, "AUTO_ORDER", ("onnx", "bf16"))
    timed = _timings(monkeypatch, {"torch": 3.0, "onnx": 2.0, "bf16": 1.0})
    spec = {"kind": "hf-text", "model": tiny_bert, "backend": "auto"}
    first = load_encoder(spec)
    assert first.backend == "bf16" and len(timed) == 3
    files = list(cache.glob("auto/*.json"))
    assert len(files) == 1 and hf_fast.read_choice(files[0])["backend"] == "bf16"

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("decided again despite the stored decision")

    # neither the probe texts' reference nor any timing is computed again
    monkeypatch.setattr(hf_fast, "min_cosine", refuse)
    monkeypatch.setattr(hf_text.HFTextEncoder, "_seconds", refuse)
    again = load_encoder(spec)
    assert again.backend == "bf16" and again.model is None
    np.testing.assert_allclose(again.encode(TEXTS), first.encode(TEXTS), atol=1e-6)
    # another setting the decision depends on is another decision
    with pytest.raises(AssertionError, match="decided again"):
        load_encoder({**spec, "int8_layers": "all"})


def test_a_stored_decision_that_cannot_be_used_is_made_again(
    tiny_bert: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import veclink.encoders.hf_text as hf_text

    monkeypatch.setattr(hf_text, "AUTO_ORDER", ("onnx", "bf16"))
    _timings(monkeypatch, {"torch": 3.0, "onnx": 1.0, "bf16": 2.0})
    spec = {"kind": "hf-text", "model": tiny_bert, "backend": "auto"}
    assert load_encoder(spec).backend == "onnx"
    (path,) = cache.glob("auto/*.json")
    _without_onnxruntime(monkeypatch)  # the stored backend is gone: decide among the rest
    assert load_encoder(spec).backend == "bf16"
    assert hf_fast.read_choice(path)["backend"] == "bf16"
    for junk in ("{not json", '{"backend": "fp4"}', "[]"):
        path.write_text(junk)
        assert load_encoder(spec).backend == "bf16"
        assert hf_fast.read_choice(path)["backend"] == "bf16"


# ---------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_fast_paths_reach_cosine_099_per_text_on_minilm() -> None:
    lines = (ROOT / "service/demo/wordnet_glosses.tsv").read_text(encoding="utf-8").splitlines()
    glosses = [line.split("\t", 1)[1] for line in lines[::25][:200]]
    assert len(glosses) == 200
    reference = load_encoder({"kind": "hf-text", "max_length": 128}).encode(glosses)
    for backend in ("bf16", "int8", "onnx", "onnx-int8"):
        enc = load_encoder({"kind": "hf-text", "max_length": 128, "backend": backend})
        cosine = _cosines(enc.encode(glosses), reference)
        assert cosine.min() >= 0.99, (backend, float(cosine.min()))


def test_threads_share_one_encoder(tiny_bert: str) -> None:
    """The server tokenizes from several threads: lengths (unpadded) and batches (padded) at once.

    Without a lock the fast tokenizer's padding setting, shared by every thread, flipped
    mid-call: a batch came back unpadded ("Unable to create tensor") or "Already borrowed".
    """
    import random
    import threading

    enc = load_encoder({"kind": "hf-text", "model": tiny_bert, "backend": "torch"})
    words = " ".join(TEXTS).split()
    errors: list[str] = []
    wrong: list[str] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(150):
            texts = [
                " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
                for _ in range(rng.randint(2, 16))
            ]
            try:
                if seed % 2:
                    lengths = enc.input_lengths(texts, "document")
                    if len(lengths) != len(texts) or min(lengths) < 3:
                        wrong.append(f"lengths {lengths}")
                else:
                    batch = enc.preprocess(texts, "document")
                    if batch["input_ids"].shape[0] != len(texts):
                        wrong.append(f"batch {tuple(batch['input_ids'].shape)}")
            except Exception as exc:  # collected: a thread's failure must fail the test
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []


# ---------------------------------------------------------------------------- device auto


def test_device_auto_is_the_default_and_falls_back_to_the_cpu(
    tiny_bert: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert HFTextSpec().device == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    enc = load_encoder({"kind": "hf-text", "model": tiny_bert})
    assert enc.device.type == "cpu" and enc.backend == "torch"
    assert enc.encode(TEXTS).shape == (len(TEXTS), 32)
    # a CPU fast path with device auto runs on the CPU (where else it cannot)
    fast = load_encoder({"kind": "hf-text", "model": tiny_bert, "backend": "int8"})
    assert fast.device.type == "cpu" and fast.backend == "int8"
    with pytest.raises(InvalidArgument, match="CUDA is not available"):
        load_encoder({"kind": "hf-text", "model": tiny_bert, "device": "cuda"})


@pytest.mark.gpu
def test_device_auto_uses_cuda_in_half_precision(tiny_bert: str) -> None:
    reference = load_encoder({"kind": "hf-text", "model": tiny_bert, "device": "cpu"})
    enc = load_encoder({"kind": "hf-text", "model": tiny_bert, "backend": "auto"})
    assert enc.device.type == "cuda" and enc.backend == "fp16"
    cosine = _cosines(enc.encode(TEXTS), reference.encode(TEXTS))
    assert cosine.min() >= 0.99
    plain = load_encoder({"kind": "hf-text", "model": tiny_bert})
    assert plain.device.type == "cuda" and plain.backend == "torch"
