"""MoEE on tiny random OLMoE, Qwen2-MoE and Mixtral models built from configs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from veclink.encoders import load_encoder
from veclink.encoders.moe_router import estimate_rw_stats
from veclink.training.moee_eval import evaluate_moee

from veclink.errors import InvalidArgument

LAYERS, EXPERTS, HIDDEN = 2, 4, 32


def _tokenizer(path: Path):  # type: ignore[no-untyped-def]
    here = Path(__file__).with_name("test_llm_text_encoder.py")
    spec = importlib.util.spec_from_file_location("llm_fx", here)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.make_tokenizer(path)


def make_moe(kind: str, path: Path) -> Path:
    from transformers import (
        MixtralConfig,
        MixtralModel,
        OlmoeConfig,
        OlmoeModel,
        Qwen2MoeConfig,
        Qwen2MoeModel,
    )

    tok = _tokenizer(path)
    common = dict(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=32,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    if kind in ("deepseek_v2", "deepseek_v3"):
        import transformers

        name = "DeepseekV2" if kind == "deepseek_v2" else "DeepseekV3"
        common.update(num_key_value_heads=4, head_dim=4)
        cfg = getattr(transformers, f"{name}Config")(
            **common,
            n_routed_experts=EXPERTS,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            first_k_dense_replace=0,
            n_shared_experts=1,
            kv_lora_rank=16,
            q_lora_rank=None,
            qk_rope_head_dim=4,
            v_head_dim=8,
            qk_nope_head_dim=8,
            n_group=1,
            topk_group=1,
        )
        model = getattr(transformers, f"{name}Model")(cfg)
    elif kind == "qwen3_moe":
        from transformers import Qwen3MoeConfig, Qwen3MoeModel

        model = Qwen3MoeModel(
            Qwen3MoeConfig(
                **common, num_experts=EXPERTS, num_experts_per_tok=2, moe_intermediate_size=16
            )
        )
    elif kind == "olmoe":
        model = OlmoeModel(OlmoeConfig(**common, num_experts=EXPERTS, num_experts_per_tok=2))
    elif kind == "qwen2_moe":
        model = Qwen2MoeModel(
            Qwen2MoeConfig(
                **common,
                num_experts=EXPERTS,
                num_experts_per_tok=2,
                moe_intermediate_size=16,
                shared_expert_intermediate_size=16,
            )
        )
    else:
        model = MixtralModel(
            MixtralConfig(**common, num_local_experts=EXPERTS, num_experts_per_tok=2)
        )
    model.save_pretrained(path)
    return path


@pytest.fixture(
    scope="module",
    params=["olmoe", "qwen2_moe", "qwen3_moe", "mixtral", "deepseek_v2", "deepseek_v3"],
)
def moe_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_moe(request.param, tmp_path_factory.mktemp(request.param))


TEXTS = ["the dog barks", "a cat sleeps on the mat", "the car drives fast", "money in the bank"]


def test_shapes(moe_dir: Path) -> None:
    for output, dim in (
        ("hs", HIDDEN),
        ("rw", LAYERS * EXPERTS),
        ("moee", HIDDEN + LAYERS * EXPERTS),
    ):
        enc = load_encoder({"kind": "moe-router", "model": str(moe_dir), "output": output})
        out = enc.encode(TEXTS)
        assert out.shape == (4, dim) and enc.dim == dim and out.dtype == np.float32


def test_moee_inner_product_is_weighted_sum_of_cosines(moe_dir: Path) -> None:
    alpha = 0.7
    hs = load_encoder({"kind": "moe-router", "model": str(moe_dir), "output": "hs"}).encode(TEXTS)
    rw = load_encoder({"kind": "moe-router", "model": str(moe_dir), "output": "rw"}).encode(TEXTS)
    moee = load_encoder(
        {"kind": "moe-router", "model": str(moe_dir), "output": "moee", "alpha": alpha}
    ).encode(TEXTS)
    np.testing.assert_allclose(moee @ moee.T, hs @ hs.T + alpha * (rw @ rw.T), atol=1e-5)


@pytest.mark.parametrize("pooling", ["last_token", "mean"])
def test_batch_invariance(moe_dir: Path, pooling: str) -> None:
    enc = load_encoder({"kind": "moe-router", "model": str(moe_dir), "pooling": pooling})
    together = enc.encode(TEXTS)
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(enc.encode([text])[0], together[i], atol=2e-5)


def test_rw_matches_an_independent_recomputation(moe_dir: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    enc = load_encoder({"kind": "moe-router", "model": str(moe_dir), "output": "rw"})
    text = "the dog barks"
    tok = AutoTokenizer.from_pretrained(moe_dir)
    model = AutoModel.from_pretrained(moe_dir).eval()
    prompt = 'This sentence : "the dog barks" means in one word:"'
    ids = [tok.bos_token_id, *tok(prompt, add_special_tokens=False)["input_ids"]]
    # each router's input, captured to recompute its logits from its own weight matrix
    gates = [m for n, m in model.named_modules() if n.endswith("mlp.gate")]
    inputs: list[torch.Tensor] = []
    hooks = [g.register_forward_pre_hook(lambda _, a: inputs.append(a[0])) for g in gates]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_router_logits=True)
    for h in hooks:
        h.remove()
    assert len(gates) == len(inputs) == LAYERS
    by_weight = [
        g.weight.float() @ x.reshape(len(ids), -1)[-1].float()
        for g, x in zip(gates, inputs, strict=True)
    ]
    last = [r.reshape(1, len(ids), -1)[0, -1] for r in out.router_logits]
    for mine, theirs in zip(by_weight, last, strict=True):
        torch.testing.assert_close(mine, theirs.float(), atol=1e-5, rtol=1e-5)
    kind = model.config.model_type
    if kind in ("mixtral", "deepseek_v2"):  # route by softmax
        last = [r.softmax(-1) for r in last]
    elif kind == "deepseek_v3":  # routes by sigmoid
        last = [r.sigmoid() for r in last]
    want = torch.cat(last).numpy()
    want /= np.linalg.norm(want)
    np.testing.assert_allclose(enc.encode([text])[0], want, atol=1e-5)
    assert want.size == LAYERS * EXPERTS
    mean = load_encoder(
        {"kind": "moe-router", "model": str(moe_dir), "output": "rw", "pooling": "mean"}
    )
    assert not np.allclose(mean.encode([text])[0], want, atol=1e-3)


def test_fixed_rw_statistics(moe_dir: Path, tmp_path: Path) -> None:
    enc = load_encoder({"kind": "moe-router", "model": str(moe_dir), "output": "rw"})
    stats = tmp_path / "rw_stats.npz"
    estimate_rw_stats(enc, TEXTS * 3, str(stats))
    fixed = load_encoder(
        {"kind": "moe-router", "model": str(moe_dir), "output": "rw", "rw_stats": str(stats)}
    )
    a = fixed.encode(TEXTS)
    np.testing.assert_allclose(fixed.encode(TEXTS[:1])[0], a[0], atol=2e-5)  # still batch-free
    assert not np.allclose(a, enc.encode(TEXTS))


def test_errors(tmp_path: Path) -> None:
    from veclink.encoders import spec_from_dict

    with pytest.raises(InvalidArgument) as info:
        spec_from_dict(
            {
                "kind": "moe-router",
                "model": "x",
                "output": "both",
                "alpha": -1,
                "prompt": "no placeholder",
            }
        )
    msg = str(info.value)
    assert "spec.output" in msg and "spec.alpha" in msg and "spec.prompt" in msg
    dense = tmp_path / "dense"
    llm = importlib.util.spec_from_file_location(
        "llm_fx2", Path(__file__).with_name("test_llm_text_encoder.py")
    )
    module = importlib.util.module_from_spec(llm)  # type: ignore[arg-type]
    llm.loader.exec_module(module)  # type: ignore[union-attr]
    module.make_model("llama", dense)
    with pytest.raises(InvalidArgument, match="router logits"):
        load_encoder({"kind": "moe-router", "model": str(dense)})


def test_evaluation_command(tmp_path: Path) -> None:
    model = make_moe("olmoe", tmp_path / "olmoe")
    sts = tmp_path / "sts.csv"
    sts.write_text(
        "text1,text2,score\n"
        + "\n".join(
            f"{a},{b},{s}"
            for a, b, s in [
                ("the dog barks", "the dog barks", 5),
                ("the dog barks", "a cat sleeps", 2),
                ("the car drives fast", "the car drives slow", 4),
                ("money in the bank", "the dog", 0),
                ("a cat sleeps on the mat", "a cat sleeps", 4),
                ("the river water", "money", 1),
            ]
        )
    )
    res = evaluate_moee(str(model), str(sts), alphas=(0.5, 2.0))
    assert set(res) == {"HS", "RW", "MoEE a=0.5", "MoEE a=2"}
    assert all(-1.0 <= v <= 1.0 for v in res.values())
    ret = tmp_path / "ret.csv"
    ret.write_text(
        "query,document,relevance\nthe dog,the dog barks,1\nthe dog,money in the bank,0\n"
        "the car,the car drives fast,1\nthe car,the dog barks,0\n"
    )
    res = evaluate_moee(str(model), str(ret))
    assert all(0.0 <= v <= 1.0 for v in res.values())
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "veclink.cli",
            "eval",
            "moee",
            "--model",
            str(model),
            "--data",
            str(sts),
            "--alpha",
            "1",
            "--pooling",
            "mean",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "| HS |" in out.stdout and "| MoEE a=1 |" in out.stdout
    # fixed statistics estimated once from a corpus, then used by the evaluation
    from veclink.training.moee_eval import fit_rw_stats

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 2))
    fit_rw_stats(str(model), str(corpus), str(tmp_path / "stats.npz"))
    with np.load(tmp_path / "stats.npz") as z:
        assert z["mean"].shape == z["std"].shape == (LAYERS * EXPERTS,)
    res = evaluate_moee(str(model), str(sts), rw_stats=str(tmp_path / "stats.npz"))
    assert set(res) == {"HS", "RW", "MoEE a=1"}
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidArgument, match="text1,text2,score"):
        evaluate_moee(str(model), str(bad))
