"""An LLM text encoder served by name: Embed (with instructions) and a collection using it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
from veclink.service.settings import load_settings

from tests.fixtures.server import RunningServer
from veclink.client import Client


def _fixtures():  # type: ignore[no-untyped-def]
    here = Path(__file__).resolve().parents[1] / "unit"
    spec = importlib.util.spec_from_file_location("llm_fx", here / "test_llm_text_encoder.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_llm_model_served(tmp_path: Path) -> None:
    fx = _fixtures()
    model = fx.make_model("qwen2", tmp_path / "tiny-qwen2")
    moe_spec = importlib.util.spec_from_file_location(
        "moe_fx", Path(__file__).resolve().parents[1] / "unit" / "test_moe_router.py"
    )
    moe_fx = importlib.util.module_from_spec(moe_spec)  # type: ignore[arg-type]
    moe_spec.loader.exec_module(moe_fx)  # type: ignore[union-attr]
    moe = moe_fx.make_moe("olmoe", tmp_path / "tiny-olmoe")
    settings = load_settings(
        env={},
        overrides={
            "server": {"port": 0},
            "storage": {"data_dir": str(tmp_path / "data")},
            "models": {
                "all-MiniLM-L6-v2": {"kind": "hf-text"},
                "tiny-llm": {"kind": "llm-text", "model": str(model), "pooling": "mean"},
                "tiny-moee": {"kind": "moe-router", "model": str(moe), "alpha": 0.5},
            },
        },
    )
    running = RunningServer(settings)
    try:
        with Client(running.address) as c:
            names = {m.name: m for m in c.list_models()}
            assert names["tiny-llm"].dimensions == 32
            assert names["tiny-moee"].spec["alpha"] == 0.5
            plain = c.embed(["the dog barks"], model="tiny-llm")
            instructed = c.embed(
                ["the dog barks"],
                model="tiny-llm",
                instruction="given a search query retrieve relevant passage :",
            )
            assert plain.shape == instructed.shape == (1, 32)
            assert not np.allclose(plain, instructed)
            c.create_collection("llm-docs", model="tiny-llm")
            c.upsert(
                "llm-docs",
                [
                    {"id": str(i), "text": t}
                    for i, t in enumerate(
                        ["the dog barks", "the car drives fast", "money in the bank"]
                    )
                ],
            )
            hits = c.search(
                "llm-docs",
                vector=c.embed(["the car drives fast"], model="tiny-llm", role="document")[0],
                k=1,
            )
            assert hits[0].id == "1"
            # MoEE vectors live in the ordinary index
            assert names["tiny-moee"].dimensions == 32 + 2 * 4
            c.create_collection("moee-docs", model="tiny-moee", metric="ip")
            c.upsert(
                "moee-docs",
                [
                    {"id": str(i), "text": t}
                    for i, t in enumerate(["the dog barks", "the car drives fast"])
                ],
            )
            hits = c.search("moee-docs", text="the car drives fast", k=2)
            assert hits[0].id == "1" and hits[0].score > 1.0  # cos(HS) + 0.5 cos(RW), same text
    finally:
        running.stop()


def test_train_cli_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "veclink.cli", "train", "text-encoder", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "--objective" in out.stdout
