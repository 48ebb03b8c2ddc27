"""The demo corpus: 4,998 WordNet 3.0 glosses with their all-MiniLM-L6-v2 vectors.

Shipped in the package so a fresh server answers meaningful searches at once
(``veclink serve --demo``). See README.md in this folder for provenance and licence.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from veclink.errors import NotFound

if TYPE_CHECKING:
    from veclink.service.store import VectorStore

DEMO_COLLECTION = "wordnet"
POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}


def demo_records() -> tuple[list[dict[str, object]], np.ndarray]:
    """The demo rows (id, text, payload) and their float32 vectors."""
    base = resources.files(__package__)
    lines = base.joinpath("wordnet_glosses.tsv").read_text(encoding="utf-8").splitlines()
    with base.joinpath("wordnet_minilm_fp16.npy").open("rb") as f:
        vectors = np.load(f).astype(np.float32)
    rows = []
    for line in lines:
        synset, text = line.split("\t", 1)
        lemma = text.split(" (", 1)[0]
        rows.append(
            {
                "id": synset,
                "text": text,
                "payload": {"lemma": lemma, "pos": POS.get(synset[-1], synset[-1])},
            }
        )
    return rows, vectors


def load_demo(store: VectorStore, name: str = DEMO_COLLECTION, batch: int = 500) -> bool:
    """Create and fill the demo collection unless it exists. Returns True if it was created."""
    from veclink.wire.types import RecordIn

    try:
        store.get_collection(name)
        return False
    except NotFound:
        pass
    rows, vectors = demo_records()
    store.create_collection(name, model=store.models.default, metric="cosine")
    with tqdm(total=len(rows), desc=f"loading demo collection {name!r}", unit="rec") as bar:
        for start in range(0, len(rows), batch):
            chunk = [
                RecordIn(
                    id=str(r["id"]),
                    text=str(r["text"]),  # stored to show with hits; the vector is precomputed
                    vector=vectors[start + j],
                    payload=r["payload"],  # type: ignore[arg-type]
                )
                for j, r in enumerate(rows[start : start + batch])
            ]
            store.upsert(name, chunk)
            bar.update(len(chunk))
    return True
