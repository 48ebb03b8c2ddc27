"""Linkage jobs in cluster mode (Ray Data) give the pairs of the single-process job.

Tables read by Ray Data, embedded by ``map_batches`` over encoder replicas, blocked with a
sharded index of Ray actors and compared in parallel Ray tasks, on the development suite's
DBLP-ACM and FEBRL samples (tests/fixtures/linkage).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from veclink.cluster.linkage_job import (
    RayCompare,
    RayJobOptions,
    dedupe_on_ray,
    link_on_ray,
    read_table_on_ray,
)
from veclink.linkage import dedupe, link
from veclink.linkage.tables import read_table

from tests.fixtures.linkage import support as S
from tests.fixtures.server import RunningServer, server_settings
from tests.fixtures.tiny_models import save_tiny_bert
from veclink.client import Client

FIX = S.HERE
#: exact blocking on both sides, so that sharding the index cannot change the neighbours
SPEC = {"fields": S.DBLP_FIELDS, "blocking": {"index_kind": "flat"}}
FEBRL_TYPES = S.FEBRL_TYPES
OPTIONS = RayJobOptions(replicas=2, encoder_cpus=0.25, shards=2, partitions=3)


def test_ray_data_reads_the_tables_the_local_reader_reads(ray_cluster: Any) -> None:
    for name in ("dblp_sample.csv", "acm_sample.csv", "febrl1_sample.csv"):
        id_column = "rec_id" if name.startswith("febrl") else "id"
        local = read_table(FIX / name, id_column=id_column)
        on_ray = read_table_on_ray(FIX / name, id_column=id_column)
        assert (on_ray.ids, on_ray.columns) == (local.ids, local.columns)
        assert dict(on_ray.data) == dict(local.data)


def test_link_job_on_ray_gives_the_local_pairs(ray_cluster: Any) -> None:
    left = read_table_on_ray(FIX / "dblp_sample.csv")
    right = read_table_on_ray(FIX / "acm_sample.csv")
    local = link(left, right, SPEC, encoder=S.HashEncoder())
    on_ray = link_on_ray(left, right, SPEC, encoder=S.HashEncoder(), options=OPTIONS)
    assert len(on_ray.candidates.left) >= RayCompare().min_pairs  # compared in partitions
    np.testing.assert_array_equal(on_ray.candidates.left, local.candidates.left)
    np.testing.assert_array_equal(on_ray.candidates.right, local.candidates.right)
    np.testing.assert_allclose(on_ray.features.values, local.features.values, atol=1e-5)
    assert [(a, b) for a, b, _ in on_ray.matches()] == [(a, b) for a, b, _ in local.matches()]
    assert len(local.matches()) > 20


@pytest.mark.slow
def test_dedupe_job_on_ray_gives_the_local_entities(ray_cluster: Any) -> None:
    table = read_table_on_ray(FIX / "febrl1_sample.csv", id_column="rec_id")
    spec = {
        "left_id": "rec_id",
        "fields": [{"name": k, "type": v} for k, v in FEBRL_TYPES.items()],
        "blocking": {"index_kind": "flat"},
    }
    local = dedupe(table, spec, encoder=S.HashEncoder())
    on_ray = dedupe_on_ray(table, spec, encoder=S.HashEncoder(), options=OPTIONS)
    assert on_ray.entity.tolist() == local.entity.tolist()
    assert len(set(local.entity.tolist())) < len(table)


@pytest.mark.slow
def test_cluster_server_runs_a_dedupe_job_on_ray(ray_cluster: Any, tmp_path: Path) -> None:
    """Over gRPC: the job's embed, block and compare stages run on the cluster."""
    spec_path = save_tiny_bert(tmp_path / "tiny")
    encoder = {"kind": "hf-text", "model": spec_path, "backend": "torch", "max_length": 32}
    base = server_settings(
        tmp_path / "data",
        cluster={"ray_address": ray_cluster.address, "encoder_replicas": 1, "encoder_cpus": 0.25},
        sources={"path_dirs": [str(FIX)]},
    )
    settings = dataclasses.replace(base, models={"tiny": encoder}, default_model="tiny")
    running = RunningServer(settings)
    try:
        assert running.server.jobs.job_arguments is not None  # jobs go to Ray
        with Client(running.address) as client:
            job_id = client.start_job(
                "dedupe",
                str(FIX / "febrl1_sample.csv"),
                left_id="rec_id",
                spec={"encoder": encoder, "blocking": {"index_kind": "flat"}},
            )
            final = list(client.watch_job(job_id))[-1]
            assert final.state == "succeeded", final
            _, entities = client.job_results(job_id)
        local = read_table(FIX / "febrl1_sample.csv", id_column="rec_id")
        assert sorted(i for i, _ in entities) == sorted(local.ids)
    finally:
        running.stop()
