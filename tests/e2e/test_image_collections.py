"""A CLIP collection: upsert image files through the CLI, search by text and by image."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from veclink.service.settings import load_settings

from tests.fixtures.server import RunningServer
from veclink.client import Client
from veclink.errors import InvalidArgument

pytest.importorskip("open_clip")


def test_images_through_cli_and_grpc(tmp_path: Path) -> None:
    from tests.fixtures.clip_synthetic import (
        register_open_clip_config,
        shape_image,
        tiny_open_clip_config,
    )

    name = register_open_clip_config("veclink-e2e-tiny-vit", tiny_open_clip_config(), str(tmp_path))
    settings = load_settings(
        env={},
        overrides={
            "server": {"port": 0},
            "storage": {"data_dir": str(tmp_path / "data")},
            "models": {
                "all-MiniLM-L6-v2": {"kind": "hf-text"},
                "tiny-clip": {"kind": "clip", "model": f"open_clip:{name}", "pretrained": None},
            },
        },
    )
    running = RunningServer(settings)
    try:
        rng = random.Random(0)
        folder = tmp_path / "imgs"
        folder.mkdir()
        lines = []
        for i, (color, shape) in enumerate(
            [("red", "circle"), ("blue", "square"), ("green", "triangle")]
        ):
            (folder / f"{i}.png").write_bytes(shape_image(color, shape, rng=rng))
            lines.append(
                json.dumps(
                    {
                        "id": f"img{i}",
                        "image": f"{i}.png",
                        "text": f"a {color} {shape}",
                        "colour": color,
                    }
                )
            )
        (folder / "records.jsonl").write_text("\n".join(lines))
        with Client(running.address) as c:
            c.create_collection("pics", model="tiny-clip")
        cli = [sys.executable, "-m", "veclink.cli"]
        r = subprocess.run(
            [*cli, "upsert", "pics", str(folder / "records.jsonl"), "--server", running.address],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        # image-to-image: an image finds itself first
        r = subprocess.run(
            [
                *cli,
                "search",
                "pics",
                "--image",
                str(folder / "1.png"),
                "-k",
                "3",
                "--json",
                "--server",
                running.address,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        hits = json.loads(r.stdout)
        assert hits[0]["id"] == "img1" and hits[0]["payload"]["colour"] == "blue"
        with Client(running.address) as c:
            assert c.get_collection("pics").count == 3
            # text-to-image runs through the same space (random weights: only the mechanics)
            assert len(c.search("pics", text="a blue square", k=3)) == 3
            with pytest.raises(InvalidArgument, match=r"records\[0\]"):
                c.upsert("pics", [{"id": "bad", "image": b"not an image"}])
            assert c.get_collection("pics").count == 3
        missing = tmp_path / "missing.jsonl"
        missing.write_text(json.dumps({"id": "x", "image": "nope.png"}))
        r = subprocess.run(
            [*cli, "upsert", "pics", str(missing), "--server", running.address],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 1 and "does not exist" in r.stderr
    finally:
        running.stop()
