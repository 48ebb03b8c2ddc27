"""Encoder replicas on a real local multi-node Ray: the same vectors as in-process encoding,
concurrent requests coalesced into batches, and a cluster-mode server embedding through them.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from veclink.cluster.encoder_pool import ReplicatedEncoder
from veclink.encoders import load_encoder, spec_from_dict

from tests.fixtures.server import RunningServer, server_settings
from tests.fixtures.tiny_models import save_tiny_bert
from veclink.client import Client

TEXTS = [f"record number {w} of the {c} table" for w in "abcdefghij" for c in ("left", "right")]


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
    return {"kind": "hf-text", "model": path, "backend": "torch", "max_length": 32}


def test_replicas_give_the_in_process_vectors(ray_cluster: Any, tiny_spec: dict) -> None:
    spec = spec_from_dict(tiny_spec)
    local = load_encoder(spec)
    pool = ReplicatedEncoder.start(spec, 2, num_cpus=0, max_batch=8, max_wait=0.01)
    try:
        assert pool.replicas == 2 and pool.dim == local.dim
        for role in ("document", "query"):
            np.testing.assert_allclose(
                pool.encode(TEXTS, role=role), local.encode(TEXTS, role=role), atol=1e-5
            )
        # 20 one-text requests at once: the batcher sends them in far fewer chunks
        before = pool.batcher.chunks_sent
        out: dict[int, np.ndarray] = {}

        def one(i: int) -> None:
            out[i] = pool.encode([TEXTS[i]], role="query")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(TEXTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(out) == list(range(len(TEXTS)))
        expected = local.encode(TEXTS, role="query")
        for i, vec in out.items():
            np.testing.assert_allclose(vec[0], expected[i], atol=1e-5)
        assert pool.batcher.chunks_sent - before < len(TEXTS)
    finally:
        pool.close()


def test_cluster_server_embeds_through_replicas(
    ray_cluster: Any, tiny_spec: dict, tmp_path: Path
) -> None:
    base = server_settings(
        tmp_path,
        cluster={"ray_address": ray_cluster.address, "encoder_replicas": 2, "encoder_cpus": 0.0},
    )
    settings = dataclasses.replace(base, models={"tiny": tiny_spec}, default_model="tiny")
    running = RunningServer(settings)
    try:
        # the first embed starts the replica actors (a process each, loading torch and the
        # model): on a loaded 2-core machine that alone can pass the client's default 60 s
        with Client(running.address, timeout=300) as client:
            local = load_encoder(spec_from_dict(tiny_spec))
            vectors = client.embed(TEXTS[:4], model="tiny")
            np.testing.assert_allclose(vectors, local.encode(TEXTS[:4], role="query"), atol=1e-5)
            client.create_collection("t", model="tiny", shards=2)
            client.upsert("t", [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS)])
            documents = local.encode(TEXTS, role="document")
            found, _ = client.get("t", [f"d{i}" for i in range(len(TEXTS))], with_vectors=True)
            np.testing.assert_allclose(np.stack([r.vector for r in found]), documents, atol=1e-5)
            # a text query is embedded by the replicas too (the tiny random model maps all
            # these texts to nearly one point, so only the scores are checked)
            hits = client.search("t", text=TEXTS[7], k=3)
            query = local.encode([TEXTS[7]], role="query")[0]
            assert len(hits) == 3
            assert abs(hits[0].score - float((documents @ query).max())) < 1e-4
        encoder = running.server.store.models.get("tiny")
        assert isinstance(encoder, ReplicatedEncoder) and encoder.replicas == 2
    finally:
        running.stop()
