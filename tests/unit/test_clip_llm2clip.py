"""LLM2CLIPEncoder: adapter, both published weight layouts, checkpoint round trip, errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("open_clip")
from veclink.encoders import load_encoder, spec_from_dict, spec_from_json
from veclink.encoders.llm2clip import (
    TextAdapter,
    adapter_from_published,
    adapter_to_published,
)

from tests.fixtures.clip_synthetic import (
    register_open_clip_config,
    register_tiny_eva_trunk,
    shape_image,
    tiny_eva_open_clip_config,
    tiny_open_clip_config,
    write_tiny_text_model,
)
from veclink.errors import InvalidArgument


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("llm2clip")
    register_open_clip_config("veclink-test-l2c-vit", tiny_open_clip_config(), str(root / "oc"))
    write_tiny_text_model(str(root / "bert"), arch="bert")
    write_tiny_text_model(str(root / "llm"), arch="llama")
    return root


def base_spec(root, text: str = "bert") -> dict:
    kind = "hf-text" if text == "bert" else "llm-text"
    return {
        "kind": "llm2clip",
        "vision": "open_clip:veclink-test-l2c-vit",
        "text_encoder": {"kind": kind, "model": str(root / text)},
        "adapter_layers": 2,
    }


def imgs(n: int = 2) -> list[bytes]:
    rng = random.Random(5)
    return [shape_image("blue", "square", rng=rng) for _ in range(n)]


class EvaStyleAdaptor(nn.Module):
    """Independent reference with the published module structure (pre-norm residual MLP)."""

    def __init__(self, dim: int, out: int, layers: int, expansion: int) -> None:
        super().__init__()
        blocks = []
        for _ in range(layers):
            block = nn.Module()
            block.ln = nn.LayerNorm(dim)
            block.fn = nn.Sequential(
                nn.Linear(dim, expansion * dim),
                nn.GELU(),
                nn.Dropout(0),
                nn.Linear(expansion * dim, dim),
            )
            blocks.append(block)
        self.adaptor = nn.Sequential(*blocks, nn.LayerNorm(dim), nn.Linear(dim, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in list(self.adaptor)[:-2]:
            x = x + block.fn(block.ln(x))
        return self.adaptor[-1](self.adaptor[-2](x))


def test_adapter_matches_published_structure() -> None:
    torch.manual_seed(0)
    ref = EvaStyleAdaptor(16, 8, layers=3, expansion=2)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # non-trivial LayerNorm weights too
    published = {f"text_adapter.{k}": v for k, v in ref.state_dict().items()}
    ours = TextAdapter(16, 8, layers=3, expansion=2.0)
    ours.load_state_dict(adapter_from_published(published))
    x = torch.randn(5, 16)
    with torch.no_grad():
        expected = ref(nn.functional.normalize(x, dim=-1))
        torch.testing.assert_close(ours(x), expected)
    back = adapter_to_published(ours.state_dict(), 3)
    assert set(back) == {f"text.text_adaptor.{k[len('adaptor.') :]}" for k in ref.state_dict()}
    assert adapter_from_published({"visual.proj": torch.zeros(1)}) is None


def test_encode_texts_and_images_in_one_space(root) -> None:
    enc = load_encoder(base_spec(root))
    assert enc.modality == "multimodal" and enc.dim == 32
    vecs = enc.encode(["a blue square", *imgs(2), "a red circle"])
    assert vecs.shape == (4, 32) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # the text side is exactly adapter(normalised text-encoder embedding)
    llm = enc.text_encoder.encode(["a blue square"])
    with torch.no_grad():
        ref = nn.functional.normalize(enc.adapter(torch.from_numpy(llm)), dim=-1).numpy()
    np.testing.assert_allclose(vecs[0], ref[0], atol=1e-5)
    # batch invariance across mixed batches
    np.testing.assert_allclose(enc.encode([imgs(2)[1]])[0], vecs[2], atol=1e-5)
    with pytest.raises(InvalidArgument) as err:
        enc.encode(["ok", b"garbage"])
    assert err.value.field == "inputs[1]"


def test_llm_text_encoder_as_text_side(root) -> None:
    enc = load_encoder(base_spec(root, "llm"))
    assert enc.encode(["a red circle", imgs(1)[0]]).shape == (2, 32)


def test_checkpoint_round_trip_eva_layout(root, tmp_path) -> None:
    enc = load_encoder(base_spec(root))
    with torch.no_grad():
        enc.towers.module.visual.proj.mul_(2).add_(0.1)
    ckpt = enc.save_checkpoint(str(tmp_path / "ck"))
    recorded = json.loads((tmp_path / "ck" / "llm2clip.json").read_text())
    assert recorded["vision"] == "open_clip:veclink-test-l2c-vit"
    again = load_encoder({"kind": "llm2clip", "checkpoint": ckpt})
    inputs = ["a blue square", *imgs(2)]
    np.testing.assert_allclose(again.encode(inputs), enc.encode(inputs), atol=1e-5)
    # a bare weights file in the training layout, with vision/text named in the spec
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "ck" / "model.safetensors"))
    assert any(k.startswith("text.text_adaptor.") for k in state)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pt")
    from_file = load_encoder({**base_spec(root), "checkpoint": str(tmp_path / "w.pt")})
    np.testing.assert_allclose(from_file.encode(inputs), enc.encode(inputs), atol=1e-5)


def test_published_hf_layout(root, tmp_path) -> None:
    """A directory like microsoft/LLM2CLIP-*: config.json with a CLIP vision_config,
    weights vision_model.* / visual_projection.weight / text_adapter.adaptor.*."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(1)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=24,
    )
    model = CLIPVisionModelWithProjection(vision)
    adaptor = EvaStyleAdaptor(32, 24, layers=2, expansion=2)
    state = {k: v for k, v in model.state_dict().items()}
    state.update({f"text_adapter.{k}": v for k, v in adaptor.state_dict().items()})
    state["logit_scale"] = torch.tensor(3.0)
    out = tmp_path / "LLM2CLIP-tiny"
    out.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    config = {"model_type": "llm2clip", "projection_dim": 24, "vision_config": vision.to_dict()}
    (out / "config.json").write_text(json.dumps(config))

    spec = {
        "kind": "llm2clip",
        "checkpoint": str(out),
        "text_encoder": base_spec(root)["text_encoder"],
    }
    enc = load_encoder(spec)
    assert enc.dim == 24 and float(enc.logit_scale) == 3.0
    pixels = enc.preprocess(imgs(1), "document").pixels
    with torch.no_grad():
        ref_img = nn.functional.normalize(model.eval()(pixel_values=pixels).image_embeds, dim=-1)
        llm = torch.from_numpy(enc.text_encoder.encode(["a blue square"]))
        ref_txt = nn.functional.normalize(adaptor(nn.functional.normalize(llm, dim=-1)), dim=-1)
    vecs = enc.encode([imgs(1)[0], "a blue square"])
    np.testing.assert_allclose(vecs[0], ref_img[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(vecs[1], ref_txt[0].numpy(), atol=1e-5)


# timm trunk names -> EVA-CLIP's own names (written out here, independently of the loader)
EVA_NATIVE_NAMES = (
    ("attn.q_proj.bias", "attn.q_bias"),
    ("attn.v_proj.bias", "attn.v_bias"),
    ("attn.norm.", "attn.inner_attn_ln."),
    ("mlp.fc1_g.", "mlp.w1."),
    ("mlp.fc1_x.", "mlp.w2."),
    ("mlp.fc2.", "mlp.w3."),
    ("mlp.norm.", "mlp.ffn_ln."),
)


def test_published_eva02_layout(root, tmp_path) -> None:
    """A checkpoint like LLM2CLIP-EVA02-*.pt (EVA-CLIP CustomCLIP): ``visual.*`` in EVA-CLIP's
    native names, ``text.text_adaptor.*``, ``logit_scale``; loaded onto open_clip's timm EVA."""
    trunk = register_tiny_eva_trunk()
    name = register_open_clip_config(
        "veclink-test-l2c-eva", tiny_eva_open_clip_config(trunk), str(tmp_path / "oc")
    )
    spec = {**base_spec(root), "vision": f"open_clip:{name}"}
    torch.manual_seed(3)
    source = load_encoder(spec)  # its random EVA tower plays the published weights
    native = {}
    with torch.no_grad():
        for key, value in source.towers.module.visual.trunk.state_dict().items():
            if key.endswith(("norm.weight", "norm1.weight", "norm2.weight")):
                value.add_(torch.randn_like(value) * 0.2)  # a swapped norm must show
            for ours, theirs in EVA_NATIVE_NAMES:
                key = key.replace(ours, theirs)
            native[f"visual.{key}"] = value.clone()
    native["visual.rope.freqs_cos"] = torch.zeros(16, 16)  # buffers EVA-CLIP saves
    native["visual.blocks.0.attn.rope.freqs_sin"] = torch.zeros(16, 16)
    adaptor = EvaStyleAdaptor(32, 32, layers=2, expansion=2)
    native.update({f"text.text_{k}": v for k, v in adaptor.state_dict().items()})
    native["logit_scale"] = torch.tensor(4.0)
    torch.save(native, tmp_path / "LLM2CLIP-EVA02-tiny.pt")

    torch.manual_seed(4)  # different random weights unless the checkpoint loads
    enc = load_encoder({**spec, "checkpoint": str(tmp_path / "LLM2CLIP-EVA02-tiny.pt")})
    assert float(enc.logit_scale) == 4.0
    vecs = enc.encode([imgs(1)[0], "a blue square"])
    np.testing.assert_allclose(vecs[0], source.encode(imgs(1))[0], atol=1e-5)
    with torch.no_grad():
        llm = torch.from_numpy(enc.text_encoder.encode(["a blue square"]))
        ref_txt = nn.functional.normalize(adaptor(nn.functional.normalize(llm, dim=-1)), dim=-1)
    np.testing.assert_allclose(vecs[1], ref_txt[0].numpy(), atol=1e-5)
    # stage-2 checkpoints of an EVA tower are written in open_clip's layout and reload
    ckpt = enc.save_checkpoint(str(tmp_path / "ck"))
    again = load_encoder({"kind": "llm2clip", "checkpoint": ckpt})
    np.testing.assert_allclose(again.encode([imgs(1)[0]])[0], vecs[0], atol=1e-5)
    del native["visual.blocks.1.mlp.w3.weight"]
    torch.save(native, tmp_path / "broken.pt")
    with pytest.raises(InvalidArgument, match="trunk.blocks.1.mlp.fc2.weight"):
        load_encoder({**spec, "checkpoint": str(tmp_path / "broken.pt")})


def test_spec_validation_and_errors(root, tmp_path) -> None:
    spec = spec_from_dict(base_spec(root))
    assert spec_from_json(spec.to_json()) == spec
    assert hash(spec) == hash(spec_from_json(spec.to_json()))
    with pytest.raises(InvalidArgument) as err:
        spec_from_dict({"kind": "llm2clip", "vision": "ViT", "batch_size": 0})
    msg = str(err.value)
    assert "spec.vision" in msg and "spec.batch_size" in msg and "spec.text_encoder" in msg
    with pytest.raises(InvalidArgument, match="text_encoder"):
        spec_from_dict({**base_spec(root), "text_encoder": {"kind": "hf-text", "pooling": "max"}})
    with pytest.raises(InvalidArgument, match="does not exist"):
        load_encoder({"kind": "llm2clip", "checkpoint": str(tmp_path / "nope")})
    # an adapter whose input does not match the text encoder's dimension
    bad = {
        "text.text_adaptor.0.weight": torch.ones(8),
        "text.text_adaptor.0.bias": torch.zeros(8),
        "text.text_adaptor.1.weight": torch.ones(32, 8),
        "text.text_adaptor.1.bias": torch.ones(32),
    }
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(InvalidArgument, match="adapter maps 8 -> 32"):
        load_encoder({**base_spec(root), "checkpoint": str(tmp_path / "bad.pt")})


def test_stage2_with_hf_vision_tower_reloads(root, tmp_path) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    from veclink.training.clip import Stage2Config, load_pairs, train_stage2

    from tests.fixtures.clip_synthetic import write_shapes_dataset

    torch.manual_seed(2)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )
    CLIPVisionModelWithProjection(vision).save_pretrained(tmp_path / "hfv")
    enc = load_encoder({**base_spec(root), "vision": f"hf:{tmp_path / 'hfv'}"})
    first = enc.towers.module.vision_model.encoder.layers[0].mlp.fc1.weight.clone()
    last = enc.towers.module.vision_model.encoder.layers[1].mlp.fc1.weight.clone()
    write_shapes_dataset(str(tmp_path / "data"), per_class=2)
    config = Stage2Config(epochs=2, batch_size=16, unlock_vision_blocks=1)
    train_stage2(enc, load_pairs(str(tmp_path / "data")), str(tmp_path / "ck"), config)
    layers = enc.towers.module.vision_model.encoder.layers
    assert torch.equal(layers[0].mlp.fc1.weight, first)  # frozen
    assert not torch.equal(layers[1].mlp.fc1.weight, last)  # unlocked
    assert not any(p.requires_grad for p in enc.adapter.parameters())
    again = load_encoder({"kind": "llm2clip", "checkpoint": str(tmp_path / "ck")})
    inputs = ["a blue square", *imgs(2)]
    np.testing.assert_allclose(again.encode(inputs), enc.encode(inputs), atol=1e-5)
