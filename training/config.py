"""Configurations of the training runs, importable without torch (the CLI reads defaults)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from veclink.encoders.specs import LLM_POOLINGS

from veclink.errors import InvalidArgument

OBJECTIVES = ("mntp", "simcse", "supervised")
#: written next to a trained model: the ``llm-text`` spec that serves it as trained
SPEC_FILE = "encoder_spec.json"


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training stage."""

    #: base model directory (or the output of a previous stage)
    model: str
    #: text file (one passage per line) for mntp/simcse; CSV/TSV/JSONL pairs for supervised
    data: str
    #: where the merged model is written
    out: str
    objective: str = "mntp"
    steps: int = 100
    batch_size: int = 16
    lr: float = 1e-4
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    #: mntp: share of tokens masked
    mask_prob: float = 0.2
    #: simcse / supervised: softmax temperature
    temperature: float = 0.05
    #: simcse: attention dropout while training; the two dropout masks make the positive
    #: pair (decoder LLMs ship with attention dropout 0, which would leave LoRA dropout only)
    simcse_dropout: float = 0.3
    pooling: str = "mean"
    #: latent_attention pooling: number of latents
    latents: int = 512
    #: supervised: prepended to the queries only and excluded from pooling, exactly as the
    #: served encoder's ``instruction`` (LLM2Vec trains its retrieval models this way)
    instruction: str = ""
    #: wraps every text, as the served encoder's ``template`` (e.g. a chat template)
    template: str = "{text}"
    #: append EOS to every text; None = only for last_token pooling (as the encoder)
    add_eos: bool | None = None
    #: recompute activations in the backward pass: less memory for real models
    gradient_checkpointing: bool = False
    max_length: int = 128
    dtype: str = "fp32"
    device: str = "cpu"
    seed: int = 0

    def validate(self) -> None:
        problems = []
        if self.objective not in OBJECTIVES:
            problems.append(f"objective must be one of {', '.join(OBJECTIVES)}")
        if self.steps < 1 or self.batch_size < 2:
            problems.append("steps must be >= 1 and batch_size >= 2")
        if not 0 <= self.simcse_dropout < 1:
            problems.append("simcse_dropout must be in [0, 1)")
        if not 0 < self.mask_prob < 1:
            problems.append("mask_prob must be in (0, 1)")
        if self.pooling not in LLM_POOLINGS:
            problems.append(f"pooling must be one of {', '.join(LLM_POOLINGS)}")
        if self.template.count("{text}") != 1:
            problems.append("template must contain {text} exactly once")
        if self.pooling == "latent_attention" and self.objective == "mntp":
            problems.append("latent_attention pooling is trained by simcse or supervised, not mntp")
        if not Path(self.data).is_file():
            problems.append(f"data file {self.data!r} does not exist")
        if problems:
            raise InvalidArgument("invalid training config: " + "; ".join(problems), field="train")


SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stage2Config:
    """Hyper-parameters of a stage-2 run."""

    #: passes over the image/caption pairs
    epochs: int = 10
    #: pairs per contrastive batch (in-batch negatives)
    batch_size: int = 64
    #: AdamW peak learning rate
    lr: float = 1e-3
    weight_decay: float = 0.0
    #: ``constant``, or ``cosine`` decay to 0 after ``warmup_steps`` of linear warm-up
    schedule: str = "cosine"
    warmup_steps: int = 0
    #: vision blocks trained besides the projection (0 = projection only)
    unlock_vision_blocks: int = 0
    #: shuffling seed
    seed: int = 0
    #: decoded images are kept in memory when they take at most this many MiB ...
    image_cache_mb: float = 1024.0
    #: ... else decoded per batch by this many DataLoader worker processes (0 = inline)
    workers: int = 0
    #: bf16 autocast on CUDA when the encoder's weights are fp32
    amp: bool = True

    def validate(self) -> list[str]:
        problems = []
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1")
        if self.lr <= 0:
            problems.append("lr: must be > 0")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule: must be one of {', '.join(SCHEDULES)}")
        for name in ("warmup_steps", "unlock_vision_blocks", "workers", "image_cache_mb"):
            if getattr(self, name) < 0:
                problems.append(f"{name}: must be >= 0")
        return problems
