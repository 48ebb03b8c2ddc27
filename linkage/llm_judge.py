"""An optional LLM judge for borderline pairs: any local transformers causal LM.

The model reads both records and the question "Same entity?"; the judge's probability is
the softmax of the next-token logits of " yes" against " no". Only pairs near the
threshold are judged (a causal LM is slow), and their score becomes a blend of the
classifier's and the judge's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from veclink.linkage.spec import LLMJudgeSpec

from veclink._optional import require
from veclink.errors import InvalidArgument

PROMPT = (
    "Do the two records describe the same real-world entity? Answer yes or no.\n"
    "Record A: {a}\nRecord B: {b}\nAnswer:"
)


class LLMJudge:
    """Yes/no judgements from a local causal LM (weights are never downloaded)."""

    def __init__(self, spec: LLMJudgeSpec) -> None:
        transformers = require("transformers", "linkage")
        torch = require("torch", "linkage")
        self.spec = spec
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                spec.model, local_files_only=True
            )
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                spec.model, local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise InvalidArgument(
                f"cannot load the LLM judge model {spec.model!r}: {exc}",
                field="spec.llm_judge.model",
            ) from exc
        device = spec.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.model.eval().to(device)
        self.tokenizer.padding_side = "left"  # the last position is the next token for all rows
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.yes_id = self._token_id(" yes")
        self.no_id = self._token_id(" no")
        if self.yes_id == self.no_id:
            raise InvalidArgument(
                "the LLM judge's tokenizer cannot tell ' yes' from ' no'",
                field="spec.llm_judge.model",
            )

    def _token_id(self, text: str) -> int:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not ids:
            raise InvalidArgument(
                f"the tokenizer has no token for {text!r}", field="spec.llm_judge.model"
            )
        return int(ids[-1]) if len(ids) > 1 and ids[0] == self._space_id() else int(ids[0])

    def _space_id(self) -> int | None:
        ids = self.tokenizer.encode(" ", add_special_tokens=False)
        return int(ids[0]) if ids else None

    def judge(self, pairs: Sequence[tuple[str, str]], batch_size: int = 8) -> np.ndarray:
        """P(same entity) per pair of serialised records."""
        torch = require("torch", "linkage")
        out = np.empty(len(pairs), dtype=np.float64)
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            prompts = [PROMPT.format(a=a, b=b) for a, b in chunk]
            batch = self.tokenizer(
                prompts, return_tensors="pt", padding=True, truncation=True, max_length=512
            )
            ids = batch["input_ids"].to(self.device)
            mask = batch["attention_mask"].to(self.device)
            # positions count real tokens only, so a left-padded row scores as if alone
            positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
            with torch.inference_mode():
                output = self.model(input_ids=ids, attention_mask=mask, position_ids=positions)
            logits = output.logits[:, -1, :].float()
            pair = torch.stack([logits[:, self.yes_id], logits[:, self.no_id]], dim=1)
            out[start : start + len(chunk)] = torch.softmax(pair, dim=1)[:, 0].cpu().numpy()
        return out


def borderline(
    scores: np.ndarray, eligible: np.ndarray, threshold: float, spec: LLMJudgeSpec
) -> np.ndarray:
    """Rows to judge: eligible pairs within ``band`` of the threshold, closest first."""
    dist = np.abs(scores - threshold)
    rows = np.flatnonzero(eligible & (dist <= spec.band))
    return rows[np.argsort(dist[rows], kind="stable")][: spec.max_pairs]


def blend(scores: np.ndarray, rows: np.ndarray, judged: np.ndarray, weight: float) -> np.ndarray:
    out = scores.astype(np.float64, copy=True)
    out[rows] = (1 - weight) * out[rows] + weight * judged
    return out
