"""ClipImageEncoder (kind "clip") on tiny random open_clip and HF CLIP models."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
import torch

pytest.importorskip("open_clip")
from veclink.encoders import load_encoder
from veclink.encoders.images import read_image_file

from tests.fixtures.clip_synthetic import (
    register_open_clip_config,
    shape_image,
    tiny_open_clip_config,
)
from veclink.errors import InvalidArgument, ResourceExhausted


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    return register_open_clip_config(
        "veclink-test-tiny-vit", tiny_open_clip_config(), str(tmp_path_factory.mktemp("oc"))
    )


@pytest.fixture(scope="module")
def encoder(tiny_name: str):
    return load_encoder({"kind": "clip", "model": f"open_clip:{tiny_name}", "pretrained": None})


def images(n: int, fmt: str = "PNG") -> list[bytes]:
    rng = random.Random(1)
    return [shape_image("red", "circle", rng=rng, fmt=fmt) for _ in range(n)]


def test_open_clip_images_and_texts_share_space(encoder, tiny_name: str) -> None:
    import open_clip

    assert encoder.modality == "multimodal" and encoder.dim == 32
    png, jpg, webp = images(1)[0], images(1, "JPEG")[0], images(1, "WEBP")[0]
    vecs = encoder.encode([png, "a red circle", jpg, webp])
    assert vecs.shape == (4, 32) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # congruence with the plain open_clip forward pass
    from PIL import Image

    model = encoder.towers.module
    _, _, preprocess = open_clip.create_model_and_transforms(tiny_name)
    pixels = preprocess(Image.open(io.BytesIO(png)).convert("RGB")).unsqueeze(0)
    tokens = open_clip.get_tokenizer(tiny_name)(["a red circle"])
    with torch.no_grad():
        ref_img = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)[0].numpy()
        ref_txt = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)[0].numpy()
    np.testing.assert_allclose(vecs[0], ref_img, atol=1e-5)
    np.testing.assert_allclose(vecs[1], ref_txt, atol=1e-5)


def test_batch_invariance(encoder, tiny_name: str) -> None:
    imgs = images(5)
    alone = encoder.encode([imgs[3]])
    mixed = encoder.encode(["a blue square", *imgs, "x"])
    np.testing.assert_allclose(alone[0], mixed[4], atol=1e-5)
    # decoding on the thread pool (default) or inline gives the same rows in the same order
    inline = load_encoder(
        {"kind": "clip", "model": f"open_clip:{tiny_name}", "decode_threads": 1}
    ).encode(["a blue square", *imgs, "x"])
    np.testing.assert_allclose(inline, mixed, atol=1e-6)


def test_random_weights_follow_the_seed(encoder, tiny_name: str) -> None:
    # a spec names one model: loading it again (e.g. after a restart) gives the same vectors
    inputs = [*images(2), "a red circle"]
    same = load_encoder({"kind": "clip", "model": f"open_clip:{tiny_name}"})
    np.testing.assert_array_equal(same.encode(inputs), encoder.encode(inputs))
    other = load_encoder({"kind": "clip", "model": f"open_clip:{tiny_name}", "seed": 1})
    assert not np.allclose(other.encode(inputs), encoder.encode(inputs), atol=1e-3)


def test_pretrained_path_loads_weights(tmp_path, encoder, tiny_name: str) -> None:
    path = tmp_path / "w.pt"
    state = {
        k: v + 0.05 * torch.randn_like(v) for k, v in encoder.towers.module.state_dict().items()
    }
    torch.save(state, path)
    again = load_encoder(
        {"kind": "clip", "model": f"open_clip:{tiny_name}", "pretrained": str(path)}
    )
    ref = load_encoder({"kind": "clip", "model": f"open_clip:{tiny_name}"})
    ref.towers.module.load_state_dict(state)
    np.testing.assert_allclose(again.encode(images(2)), ref.encode(images(2)), atol=1e-5)
    assert not np.allclose(again.encode(images(2)), encoder.encode(images(2)), atol=1e-3)
    with pytest.raises(InvalidArgument, match="tags: none"):
        load_encoder(
            {
                "kind": "clip",
                "model": f"open_clip:{tiny_name}",
                "pretrained": str(tmp_path / "nope.pt"),
            }
        )


def test_pretrained_tag_never_downloads(monkeypatch, tmp_path) -> None:
    # an empty HF cache: a known tag must be refused, not fetched from the hub
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(InvalidArgument, match="not in the local cache"):
        load_encoder({"kind": "clip", "model": "open_clip:ViT-B-32", "pretrained": "openai"})


def test_bad_images_name_the_input(encoder, tiny_name: str) -> None:
    good = images(1)[0]
    with pytest.raises(InvalidArgument) as err:
        encoder.encode([good, "text", b"not an image"])
    assert err.value.field == "inputs[2]"
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    with pytest.raises(InvalidArgument, match="GIF"):
        encoder.encode([buf.getvalue()])
    # a truncated image passes the header check and fails at decode, in a later batch:
    # the error still names its position in the request
    many = images(40)
    bad = good[: len(good) // 2]
    with pytest.raises(InvalidArgument, match="truncated") as err:
        encoder.encode([*many[:37], bad, *many[37:]])
    assert err.value.field == "inputs[37]"
    small = load_encoder(
        {
            "kind": "clip",
            "model": f"open_clip:{tiny_name}",
            "max_image_pixels": 2000,
            "max_image_bytes": 10_000,
        }
    )
    with pytest.raises(ResourceExhausted) as err:
        small.encode(["ok", good, shape_image("red", "circle", size=64)])
    assert err.value.field == "inputs[2]"
    with pytest.raises(ResourceExhausted):
        small.encode([b"\x89PNG" + bytes(20_000)])
    with pytest.raises(InvalidArgument, match="open_clip"):
        load_encoder({"kind": "clip", "model": "open_clip:no-such-model"})
    with pytest.raises(InvalidArgument, match="spec.model"):
        load_encoder({"kind": "clip", "model": "ViT-B-32"})


def test_read_image_file(tmp_path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(images(1)[0])
    assert read_image_file(str(path)) == path.read_bytes()
    (tmp_path / "b.png").write_text("hello")
    with pytest.raises(InvalidArgument):
        read_image_file(str(tmp_path / "b.png"))
    with pytest.raises(InvalidArgument):
        read_image_file(str(tmp_path / "missing.png"))


def test_spec_json_round_trip(tiny_name: str) -> None:
    from veclink.encoders import spec_from_dict, spec_from_json

    spec = spec_from_dict({"kind": "clip", "model": f"open_clip:{tiny_name}", "pretrained": None})
    assert spec_from_json(spec.to_json()) == spec
    with pytest.raises(InvalidArgument) as err:
        spec_from_dict({"kind": "clip", "model": "x", "batch_size": 0, "max_image_bytes": 0})
    for part in ("spec.model", "spec.batch_size", "spec.max_image_bytes"):
        assert part in str(err.value)


def _tiny_hf_clip(directory, *, vision_only: bool = False) -> None:
    from transformers import (
        CLIPConfig,
        CLIPModel,
        CLIPTextConfig,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=24,
    )
    if vision_only:
        CLIPVisionModelWithProjection(vision).save_pretrained(directory)
        return
    text = CLIPTextConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        vocab_size=49408,
    )
    config = CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=24
    )
    CLIPModel(config).save_pretrained(directory)


def test_hf_clip_directory(tmp_path) -> None:
    _tiny_hf_clip(tmp_path / "clip")
    enc = load_encoder({"kind": "clip", "model": f"hf:{tmp_path / 'clip'}"})
    assert enc.modality == "multimodal" and enc.dim == 24
    vecs = enc.encode([images(1)[0], "a red circle", "a blue square"])
    assert vecs.shape == (3, 24) and np.isfinite(vecs).all()
    assert not np.allclose(vecs[1], vecs[2])
    # congruence with the HF forward pass on the same pixels
    from transformers import CLIPModel

    ref = CLIPModel.from_pretrained(tmp_path / "clip").eval()
    pixels = enc.preprocess([images(1)[0]], "document").pixels
    with torch.no_grad():
        out = ref.visual_projection(ref.vision_model(pixel_values=pixels).pooler_output)
    np.testing.assert_allclose(
        vecs[0], torch.nn.functional.normalize(out, dim=-1)[0].numpy(), atol=1e-5
    )

    # a checkpoint whose config only carries a CLIP vision_config (LLM2CLIP's published
    # layout) loads the vision tower natively: same image vectors, no text tower
    import shutil

    shutil.copytree(tmp_path / "clip", tmp_path / "vision")
    config = json.loads((tmp_path / "vision" / "config.json").read_text())
    config["model_type"] = "llm2clip"
    (tmp_path / "vision" / "config.json").write_text(json.dumps(config))
    venc = load_encoder({"kind": "clip", "model": f"hf:{tmp_path / 'vision'}"})
    assert venc.modality == "image"
    np.testing.assert_allclose(venc.encode(images(1)), vecs[:1], atol=1e-5)
    with pytest.raises(InvalidArgument, match="inputs\\[0\\]"):
        venc.encode(["text"])
    with pytest.raises(InvalidArgument):
        load_encoder({"kind": "clip", "model": f"hf:{tmp_path / 'missing'}"})


def test_hf_clip_config_without_text_weights_is_vision_only(tmp_path) -> None:
    """LLM2CLIP's HF directories carry a full CLIP config but only the vision weights."""
    from safetensors.torch import load_file, save_file

    _tiny_hf_clip(tmp_path / "clip")
    full = load_encoder({"kind": "clip", "model": f"hf:{tmp_path / 'clip'}"})
    weights = tmp_path / "clip" / "model.safetensors"
    state = load_file(str(weights))
    kept = {k: v for k, v in state.items() if not k.startswith(("text_model.", "text_projection"))}
    save_file(kept, str(weights))
    enc = load_encoder({"kind": "clip", "model": f"hf:{tmp_path / 'clip'}"})
    assert enc.modality == "image" and enc.dim == 24
    np.testing.assert_allclose(enc.encode(images(1)), full.encode(images(1)), atol=1e-5)


def test_hf_vision_only_directory(tmp_path) -> None:
    _tiny_hf_clip(tmp_path / "v", vision_only=True)
    enc = load_encoder({"kind": "clip", "model": f"hf:{tmp_path / 'v'}"})
    assert enc.modality == "image" and enc.dim == 24
    assert enc.encode(images(2)).shape == (2, 24)
