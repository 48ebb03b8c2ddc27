"""Latent-attention pooling (NV-Embed): token states attend to a trainable latent array.

The layout is NV-Embed's own, so a published NV-Embed checkpoint's pooling weights load
into it unchanged (see ``llm_layouts``) and the pooling veclink trains is the same
architecture: a pre-LayerNorm cross-attention whose queries are the token states and whose
keys/values are the latents (bias-free projections, a residual), a pre-LayerNorm GEGLU
feed-forward (a residual), then a mean over the text tokens. Every token is pooled on its
own (no attention between tokens here), so a text's vector does not depend on its batch.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from veclink.errors import InvalidArgument

#: the file, in a model directory, that holds trained pooling weights
LATENT_FILE = "latent_attention.pt"


class LatentAttentionPooling(torch.nn.Module):
    """NV-Embed latent attention, then a masked mean.

    Args:
        dim: hidden size of the decoder.
        latents: number of latent vectors (NV-Embed: 512).
        heads: attention heads (NV-Embed: 8).
        dim_head: width of one head (NV-Embed: 4096, i.e. the hidden size); default
            ``dim // heads``, which keeps a freshly trained pooling small.
    """

    def __init__(
        self, dim: int, latents: int = 512, heads: int = 8, dim_head: int | None = None
    ) -> None:
        super().__init__()
        self.dim, self.num_heads = dim, heads
        self.dim_head = dim_head or max(dim // heads, 1)
        inner = heads * self.dim_head
        # a buffer, so a saved state dict alone gives back the shape
        self.register_buffer("heads", torch.tensor(heads), persistent=True)
        self.latents = torch.nn.Parameter(torch.randn(latents, dim))
        self.norm = torch.nn.LayerNorm(dim)  # on the token states (the queries)
        self.norm_context = torch.nn.LayerNorm(dim)  # on the latents (keys and values)
        self.to_q = torch.nn.Linear(dim, inner, bias=False)
        self.to_kv = torch.nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = torch.nn.Linear(inner, dim, bias=False)
        self.ff_norm = torch.nn.LayerNorm(dim)
        self.ff_in = torch.nn.Linear(dim, 8 * dim)  # value and gate halves of the GEGLU
        self.ff_out = torch.nn.Linear(4 * dim, dim)
        # both residual branches start at zero: a fresh pooling is the plain mean, and
        # training moves away from it rather than from noise on top of the LLM's states
        torch.nn.init.zeros_(self.to_out.weight)
        torch.nn.init.zeros_(self.ff_out.weight)
        torch.nn.init.zeros_(self.ff_out.bias)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pool ``hidden (b, t, dim)`` over the tokens where ``mask (b, t)`` is 1."""
        x = hidden.to(self.latents.dtype)  # the pooling keeps its own dtype under any decoder
        b, t, _ = x.shape
        q = self.to_q(self.norm(x)).view(b, t, self.num_heads, self.dim_head).transpose(1, 2)
        k, v = self.to_kv(self.norm_context(self.latents)).chunk(2, dim=-1)
        k = k.view(1, -1, self.num_heads, self.dim_head).transpose(1, 2).expand(b, -1, -1, -1)
        v = v.view(1, -1, self.num_heads, self.dim_head).transpose(1, 2).expand(b, -1, -1, -1)
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        x = self.to_out(att.transpose(1, 2).reshape(b, t, -1)) + x
        value, gate = self.ff_in(self.ff_norm(x)).chunk(2, dim=-1)
        x = self.ff_out(value * torch.nn.functional.gelu(gate)) + x
        m = mask.to(x.device).unsqueeze(-1).to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def save_latent(module: LatentAttentionPooling, model_dir: str | os.PathLike[str]) -> str:
    """Write the pooling to ``model_dir/latent_attention.pt`` (its state dict, which also
    records the number of heads, so the shape can be rebuilt from the file alone)."""
    path = os.path.join(os.fspath(model_dir), LATENT_FILE)
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, path)
    return path


def load_latent(
    model_dir: str, dim: int, *, dtype: torch.dtype = torch.float32, device: Any = "cpu"
) -> LatentAttentionPooling | None:
    """The pooling trained with the model in ``model_dir``; None when there is none.

    Raises:
        InvalidArgument (field ``spec.pooling``): weights of another layout or hidden size.
    """
    path = os.path.join(os.path.expanduser(model_dir), LATENT_FILE)
    if not os.path.exists(path):
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return build_latent(state, dim, dtype=dtype, device=device, src=path)


def build_latent(
    state: dict[str, torch.Tensor],
    dim: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: Any = "cpu",
    src: str = "",
) -> LatentAttentionPooling:
    """The pooling that holds ``state`` (its shape read from the state itself), checked
    against a ``dim``-wide model."""
    needed = ("latents", "heads", "to_q.weight")
    if not isinstance(state, dict) or any(k not in state for k in needed):
        raise InvalidArgument(
            f"{src} is not a latent-attention pooling of this veclink version "
            "(train the pooling again)",
            field="spec.pooling",
        )
    latents, width = (int(n) for n in state["latents"].shape)
    heads = int(state["heads"])
    if width != dim:
        raise InvalidArgument(
            f"{src}: the pooling was trained for hidden size {width}, the model has {dim}",
            field="spec.pooling",
        )
    with torch.device("meta"):  # no random init of weights that are overwritten at once
        dim_head = int(state["to_q.weight"].shape[0]) // heads
        module = LatentAttentionPooling(dim, latents, heads, dim_head)
    try:
        module.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise InvalidArgument(f"{src} does not fit: {exc}", field="spec.pooling") from exc
    return module.to(device=device, dtype=dtype).eval()
