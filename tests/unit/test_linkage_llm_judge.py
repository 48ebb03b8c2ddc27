"""LLM judge mechanics with a tiny random causal LM built from a config (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from veclink.linkage import LLMJudgeSpec, link, read_table
from veclink.linkage.llm_judge import PROMPT, LLMJudge, blend, borderline

from tests.fixtures.linkage import support
from veclink.errors import InvalidArgument

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "linkage"


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = set(PROMPT.replace("{a}", "").replace("{b}", "").split())
    words |= {"yes", "no", "paper", "data", "query", "xml", "2001", "vldb", "sigmod"}
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[EOS]", *sorted(words)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=2,
    )
    path = tmp_path_factory.mktemp("tiny-lm")
    LlamaForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)
    return str(path)


def test_judge_probabilities_are_deterministic_and_batch_invariant(tiny_lm: str) -> None:
    judge = LLMJudge(LLMJudgeSpec(model=tiny_lm))
    pairs = [
        ("xml query paper", "xml query paper 2001"),
        ("data", "vldb sigmod data paper"),
        ("paper", "no"),
    ]
    together = judge.judge(pairs, batch_size=8)
    alone = np.concatenate([judge.judge([p], batch_size=1) for p in pairs])
    assert together.shape == (3,) and ((together > 0) & (together < 1)).all()
    assert np.allclose(together, alone, atol=1e-5)
    assert np.allclose(judge.judge(pairs), together)


def test_borderline_selection_and_blend() -> None:
    scores = np.array([0.1, 0.45, 0.55, 0.9, 0.5])
    eligible = np.array([True, True, True, True, False])
    rows = borderline(scores, eligible, 0.5, LLMJudgeSpec(model="x", band=0.1, max_pairs=5))
    assert sorted(rows.tolist()) == [1, 2]
    out = blend(scores, rows, np.array([1.0, 0.0]), 0.5)
    assert out[rows].tolist() == pytest.approx([0.725, 0.275]) and out[0] == 0.1


def test_link_with_judge_rescoring(tiny_lm: str) -> None:
    s = support
    left = read_table(FIX / "dblp_sample.csv", encoding="latin-1")
    right = read_table(FIX / "acm_sample.csv", encoding="latin-1")
    spec = {"fields": s.DBLP_FIELDS, "llm_judge": {"model": tiny_lm, "band": 1.0, "max_pairs": 6}}
    result = link(left, right, spec, encoder=s.HashEncoder(), index_factory=s.index_factory())
    assert result.judged_rows is not None and len(result.judged_rows) == 6
    assert "judge" in [st.name for st in result.stages]


def test_missing_model_is_an_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot load the LLM judge model"):
        LLMJudge(LLMJudgeSpec(model=str(tmp_path / "nope")))
