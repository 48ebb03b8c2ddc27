"""Training and evaluation of encoders, apart from serving.

- ``text_encoder``: a decoder LLM into a text encoder (LLM2Vec: MNTP, then SimCSE or
  supervised contrastive, with LoRA);
- ``clip`` and ``clip_data``: LLM2CLIP stage 2 (a CLIP vision tower aligned with a frozen
  LLM text encoder) and its data;
- ``moee_eval``: HS vs RW vs MoEE on a labelled set, to pick MoEE's alpha;
- ``config``: the run configurations (no torch import).

Serving (``veclink.encoders``, ``veclink.service``) never imports this package.
"""
