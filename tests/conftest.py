"""Shared fixtures: PostgreSQL schemas per test, GPU auto-skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

PG_URL = os.environ.get("VECLINK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A local two-node Ray cluster (head + one worker node), shared by the session."""
    from tests.fixtures.ray_cluster import cluster_session

    yield from cluster_session()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A SQLAlchemy URL whose search_path is a fresh schema, dropped afterwards.

    PostgreSQL tests run for real (CI has a server on 127.0.0.1:5432); set
    VECLINK_SKIP_POSTGRES=1 to skip them on a machine without one.
    """
    if os.environ.get("VECLINK_SKIP_POSTGRES") == "1":
        pytest.skip("VECLINK_SKIP_POSTGRES=1")
    from sqlalchemy import create_engine, text

    schema = f"veclink_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # a clear failure, not a silent skip
        pytest.fail(
            f"PostgreSQL at {PG_URL} is not reachable ({exc}); "
            "set VECLINK_TEST_PG_URL or VECLINK_SKIP_POSTGRES=1"
        )
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
