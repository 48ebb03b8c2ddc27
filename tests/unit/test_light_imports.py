"""Reading an encoder spec and asking the CLI for help load no heavy library.

Each check runs in a fresh interpreter, since this test process has long imported them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "grpc", "sklearn", "sqlalchemy", "open_clip")


def loaded_after(code: str) -> list[str]:
    """The HEAVY modules present in ``sys.modules`` after running ``code`` in a new process."""
    probe = (
        "import contextlib, io, json, sys\n"
        f"{code}\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_encoder_specs_load_without_torch() -> None:
    code = (
        "from veclink.encoders import spec_from_dict\n"
        "from veclink.encoders.specs import HFTextSpec, LLM2CLIPSpec\n"
        "spec_from_dict({'kind': 'llm2clip', 'vision': 'open_clip:ViT-B-32',"
        " 'text_encoder': {'kind': 'llm-text', 'model': 'm'}})\n"
        "HFTextSpec().to_json()"
    )
    assert loaded_after(code) == []


def test_cli_parser_loads_no_heavy_library() -> None:
    assert loaded_after("from veclink.cli.main import build_parser\nbuild_parser()") == []


@pytest.mark.parametrize("argv", [["--help"], ["link", "--help"], ["train", "clip", "--help"]])
def test_cli_help_loads_no_heavy_library(argv: list[str]) -> None:
    code = (
        "from veclink.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main({argv!r})"
    )
    assert loaded_after(code) == []


def test_libraries_never_import_the_applications() -> None:
    """The libraries and the server sit under the CLI and training, never the other way."""
    import ast
    from pathlib import Path

    from tests.fixtures.source import parse

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for folder in ("veclink", "encoders", "index", "linkage", "service"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(parse(path)):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                offenders += [
                    f"{path.relative_to(root)}: {n}"
                    for n in names
                    if n.startswith(("veclink.cli", "veclink.training", "tests"))
                ]
    assert offenders == []


def test_client_loads_neither_the_server_nor_the_libraries() -> None:
    """``import veclink.client`` brings grpc, protobuf and numpy, and nothing of the server,
    the index, the encoders, the linkage pipeline, torch or SQLAlchemy."""
    probe = (
        "import json, sys\n"
        "import veclink.client\n"
        "from veclink.client import Client\n"
        "Client('127.0.0.1:1').close()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    server_side = ("veclink.service", "veclink.linkage", "veclink.index", "veclink.encoders")
    libraries = ("torch", "sqlalchemy", "transformers", "sklearn", "faiss", "scipy", "pandas")
    offenders = [m for m in loaded if m.startswith(server_side) or m.split(".")[0] in libraries]
    assert offenders == []
    assert "grpc" in loaded and "veclink.wire.convert" in loaded  # it did load the client
