"""EncodeBatcher: merged requests get the vectors they would get alone, per encoder kind;
many concurrent callers; a failing input fails only its request; cancelled and expired
requests are dropped before they are encoded."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from veclink.encoders import load_encoder
from veclink.encoders.base import Encoder, Modality, Role
from veclink.encoders.batcher import BatchedEncoder, BatchPolicy, EncodeBatcher

from veclink.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
WORDS = "the a dog cat barks sleeps on mat car drives fast slow bank money river water".split()


def _module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"batcher_fx_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def _glosses(n: int) -> list[str]:
    lines = (ROOT / "service/demo/wordnet_glosses.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines[::7][:n]]


def _images(n: int, seed: int = 1) -> list[bytes]:
    from tests.fixtures.clip_synthetic import shape_image

    rng = random.Random(seed)
    colours, shapes = ("red", "green", "blue"), ("circle", "square", "triangle")
    return [shape_image(rng.choice(colours), rng.choice(shapes), rng=rng) for _ in range(n)]


# ---------------------------------------------------------------------------- encoders


@pytest.fixture(scope="module")
def minilm() -> Encoder:
    return load_encoder({"kind": "hf-text"})


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    path = _module("test_llm_text_encoder").make_model("llama", tmp_path_factory.mktemp("llm"))
    return load_encoder({"kind": "llm-text", "model": str(path), "pooling": "mean"})


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    path = _module("test_moe_router").make_moe("olmoe", tmp_path_factory.mktemp("moe"))
    return load_encoder({"kind": "moe-router", "model": str(path)})


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    pytest.importorskip("open_clip")
    from tests.fixtures.clip_synthetic import register_open_clip_config, tiny_open_clip_config

    name = register_open_clip_config(
        "veclink-test-batcher-vit", tiny_open_clip_config(), str(tmp_path_factory.mktemp("oc"))
    )
    return load_encoder({"kind": "clip", "model": f"open_clip:{name}"})


def _requests(kind: str) -> list[list[str | bytes]]:
    """Requests of different sizes and lengths, with a duplicate across two of them."""
    if kind == "minilm":
        texts: list[str | bytes] = list(_glosses(24))
    elif kind == "clip":
        texts = [*_images(8), *_sentences(8, 3)]
        random.Random(0).shuffle(texts)
    else:
        texts = list(_sentences(20, 2))
    sizes = [1, 3, 1, 5, 2, 1, 4]
    out, at = [], 0
    for size in sizes:
        out.append(texts[at : at + size])
        at += size
    out.append([texts[0], texts[at % len(texts)]])  # texts[0] also sits in the first request
    return out


def _held(batcher: EncodeBatcher) -> threading.Event:
    """Keep the batcher's model thread busy until the returned event is set, so that what is
    submitted meanwhile gathers into one group."""
    release = threading.Event()
    started = threading.Event()
    forward = batcher.encoder.forward

    def blocking(batch: Any) -> Any:
        started.set()
        release.wait(60)
        return forward(batch)

    batcher.encoder.forward = blocking  # type: ignore[method-assign]
    ticket = batcher.submit([_first_input(batcher.encoder)], "document")
    assert started.wait(60)
    batcher.encoder.forward = forward  # type: ignore[method-assign]
    release.ticket = ticket  # type: ignore[attr-defined]
    return release


def _first_input(encoder: Encoder) -> str | bytes:
    return _images(1)[0] if encoder.modality == "image" else "a dog"


@pytest.mark.parametrize("kind", ["minilm", "llm", "moe", "clip"])
def test_merged_batches_give_each_request_its_vectors_alone(
    kind: str, request: pytest.FixtureRequest
) -> None:
    encoder: Encoder = request.getfixturevalue(kind)
    requests = _requests(kind)
    for role in ("query", "document"):
        alone = [encoder.encode(r, role) for r in requests]
        batcher = EncodeBatcher(encoder, BatchPolicy(max_wait_s=60.0), name=kind)
        try:
            release = _held(batcher)
            tickets = [batcher.submit(r, role) for r in requests]
            before = batcher.batches
            release.set()
            got = [t.result(timeout=120) for t in tickets]
            # everything submitted while the model was busy ran as one group: its batches
            # are the group's length-sorted cut, fewer than one per request
            assert batcher.batches - before <= len(requests) // 2 + 1
        finally:
            batcher.close()
        for r, a, g in zip(requests, alone, got, strict=True):
            assert g.shape == (len(r), encoder.dim) and g.dtype == np.float32
            np.testing.assert_allclose(g, a, atol=2e-5)


def test_a_lone_request_at_an_idle_model_does_not_wait(minilm: Encoder) -> None:
    batcher = EncodeBatcher(minilm, BatchPolicy(max_wait_s=3600.0))
    try:
        out = batcher.encode(["a lone sentence"])  # would take an hour if it waited
    finally:
        batcher.close()
    np.testing.assert_allclose(out, minilm.encode(["a lone sentence"]), atol=1e-5)


def test_many_threads_and_async_callers(llm: Encoder) -> None:
    batcher = EncodeBatcher(llm, BatchPolicy(max_wait_s=0.002), name="llm")
    texts = _sentences(120, 7)
    reference = llm.encode(texts)
    got: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def thread_caller(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(10):
                picks = rng.sample(range(len(texts)), rng.randint(1, 4))
                out = batcher.encode([texts[i] for i in picks], "document")
                for i, row in zip(picks, out, strict=True):
                    got.setdefault(i, row)
                    np.testing.assert_allclose(row, reference[i], atol=2e-5)
        except BaseException as exc:  # noqa: BLE001 -- collected, fails the test below
            errors.append(exc)

    async def async_callers() -> list[np.ndarray]:
        async def one(i: int) -> np.ndarray:
            ticket = batcher.submit([texts[i]], "document")
            return (await asyncio.wrap_future(ticket.future))[0]

        return await asyncio.gather(*(one(i) for i in range(len(texts))))

    try:
        threads = [threading.Thread(target=thread_caller, args=(s,)) for s in range(16)]
        for t in threads:
            t.start()
        rows = asyncio.run(async_callers())
        for t in threads:
            t.join()
    finally:
        batcher.close()
    assert errors == []
    np.testing.assert_allclose(np.stack(rows), reference, atol=2e-5)
    assert batcher.encoded < 16 * 10 * 4 + len(texts)  # requests shared batches


def test_a_bad_input_fails_only_its_own_request(clip: Encoder) -> None:
    good = _images(6, seed=5)
    truncated = good[0][: len(good[0]) // 2]  # passes the header check, fails to decode
    batcher = EncodeBatcher(clip, BatchPolicy(max_wait_s=60.0), name="clip")
    try:
        release = _held(batcher)
        ok_before = batcher.submit([good[1], "a red circle"])
        bad = batcher.submit([good[2], truncated])
        ok_after = batcher.submit([good[3], good[4]])
        release.set()
        with pytest.raises(InvalidArgument, match="truncated") as err:
            bad.result(timeout=120)
        assert err.value.field == "inputs[1]"
        np.testing.assert_allclose(
            ok_before.result(timeout=120), clip.encode([good[1], "a red circle"]), atol=2e-5
        )
        np.testing.assert_allclose(
            ok_after.result(timeout=120), clip.encode([good[3], good[4]]), atol=2e-5
        )
        # inputs that fail the checks fail at submit, before they join anything
        with pytest.raises(InvalidArgument) as err:
            batcher.submit(["fine", b"not an image"])
        assert err.value.field == "inputs[1]"
    finally:
        batcher.close()


class _Counting(Encoder):
    """A real encoder whose preprocess records what it was given (to see what was dropped)."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.batch_size = inner.batch_size
        self.seen: list[str | bytes] = []

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def modality(self) -> Modality:
        return self.inner.modality

    def preprocess(self, inputs: Sequence[str | bytes], role: Role) -> Any:
        self.seen.extend(inputs)
        return self.inner.preprocess(inputs, role)

    def forward(self, batch: Any) -> Any:
        return self.inner.forward(batch)

    def postprocess(self, output: Any, batch: Any) -> np.ndarray:
        return self.inner.postprocess(output, batch)


def test_cancelled_and_expired_requests_are_not_encoded(moe: Encoder) -> None:
    counting = _Counting(moe)
    batcher = EncodeBatcher(counting, BatchPolicy(max_wait_s=60.0), name="moe")
    try:
        release = _held(batcher)
        kept = batcher.submit(["the dog barks"])
        cancelled = batcher.submit(["money in the bank"])
        expired = batcher.submit(["the car drives fast"], deadline=0.0)
        cancelled.cancel()
        release.set()
        np.testing.assert_allclose(
            kept.result(timeout=120), moe.encode(["the dog barks"]), atol=2e-5
        )
        with pytest.raises(DeadlineExceeded):
            expired.result(timeout=120)
        assert cancelled.future.cancelled()
    finally:
        batcher.close()
    assert "the dog barks" in counting.seen
    assert "money in the bank" not in counting.seen
    assert "the car drives fast" not in counting.seen
    with pytest.raises(FailedPrecondition):
        batcher.submit(["after close"])


def test_batched_encoder_is_what_linkage_holds(minilm: Encoder) -> None:
    batcher = EncodeBatcher(minilm)
    try:
        view = BatchedEncoder(batcher)
        assert view.dim == minilm.dim and view.modality == "text"
        texts = _glosses(5)
        np.testing.assert_allclose(view.encode(texts), minilm.encode(texts), atol=1e-5)
        assert view.encode([]).shape == (0, minilm.dim)
    finally:
        batcher.close()


def test_token_budget_cuts_merged_groups(minilm: Encoder) -> None:
    counting = _Counting(minilm)
    batcher = EncodeBatcher(counting, BatchPolicy(max_wait_s=60.0, batch_tokens=64))
    texts = _glosses(12)
    try:
        release = _held(batcher)
        before = len(counting.seen)
        tickets = [batcher.submit([t]) for t in texts]
        release.set()
        for t, text in zip(tickets, texts, strict=True):
            np.testing.assert_allclose(
                t.result(timeout=120)[0], minilm.encode([text])[0], atol=2e-5
            )
        assert len(counting.seen) - before == len(texts)
        # 12 glosses of 10-40 tokens cannot fit one 64-token batch
        assert batcher.batches >= 3
    finally:
        batcher.close()
