"""Every Python snippet of the README runs as printed, against a live server.

Each ```python block of README.md runs in a fresh interpreter (as a reader would run it)
against a server in this process. The address the README uses, ``127.0.0.1:50051``, is
replaced by the test server's. A block that needs what a test machine cannot have is
marked in the README by an HTML comment on the line before it, e.g.
``<!-- readme-test: skip (needs a GPU) -->``; it is reported as skipped with that reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.fixtures.server import RunningServer, server_settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: the address snippets use; the test server's replaces it
README_ADDRESS = "127.0.0.1:50051"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]*)\)\s*-->")


class Snippet(NamedTuple):
    line: int  # of the opening fence
    code: str
    skip: str | None  # the reason, when marked


def snippets(text: str) -> list[Snippet]:
    """The ```python blocks of ``text``, with the skip marker on the line before each."""
    lines = text.splitlines()
    out: list[Snippet] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            before = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
            marked = SKIP.search(before)
            out.append(Snippet(start + 1, "\n".join(body) + "\n", marked and marked["reason"]))
        i += 1
    return out


SNIPPETS = snippets(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_snippets_that_run() -> None:
    assert SNIPPETS, "README.md has no ```python block"
    assert any(s.skip is None for s in SNIPPETS), "every README snippet is marked skip"
    assert any(README_ADDRESS in s.code for s in SNIPPETS if s.skip is None)


def test_snippet_parser_reads_fences_and_skip_markers() -> None:
    text = (
        "intro\n```python\nprint(1)\n```\n\n<!-- readme-test: skip (needs a GPU) -->\n\n"
        "```python\nimport torch\n```\n```bash\nls\n```\n"
    )
    assert snippets(text) == [
        Snippet(2, "print(1)\n", None),
        Snippet(8, "import torch\n", "needs a GPU"),
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(server_settings(tmp_path_factory.mktemp("readme")))
    yield running
    running.stop()


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"README.md:{s.line}" for s in SNIPPETS])
def test_readme_snippet_runs_as_printed(
    snippet: Snippet, server: RunningServer, tmp_path: Path
) -> None:
    if snippet.skip is not None:
        pytest.skip(f"README.md:{snippet.line} marked skip: {snippet.skip}")
    code = snippet.code.replace(README_ADDRESS, server.address)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECLINK")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (
        f"README.md:{snippet.line} failed (exit {done.returncode}):\n"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    if "print(" in code:  # what it prints (hits, pairs) came back from the server
        assert done.stdout.strip(), f"README.md:{snippet.line} printed nothing"


def blocks(text: str, language: str) -> list[tuple[int, str]]:
    """``(line, body)`` of the fenced blocks of ``language`` in ``text``."""
    return [
        (text.count("\n", 0, m.start()) + 1, m["body"])
        for m in re.finditer(rf"^```{language}\n(?P<body>.*?)^```$", text, re.M | re.S)
    ]


def test_readme_settings_and_model_specs_load(tmp_path: Path) -> None:
    """The README's TOML: its settings load as they are, its model tables are valid specs."""
    import tomllib

    from veclink.encoders import spec_from_dict
    from veclink.service.settings import load_settings

    found = blocks(README.read_text(encoding="utf-8"), "toml")
    assert found, "README.md has no ```toml block"
    for line, body in found:
        data = tomllib.loads(body)
        if set(data) - {"models"}:  # a settings file
            path = tmp_path / f"readme-{line}.toml"
            path.write_text(body)
            load_settings(path, env={})
        for name, spec in data.get("models", {}).items():
            assert spec_from_dict(spec).kind == spec["kind"], (line, name)
