from __future__ import annotations

from pathlib import Path

import pytest
from veclink.service.settings import Settings, load_settings

from veclink.errors import InvalidArgument


def test_defaults() -> None:
    s = load_settings(env={})
    assert s == Settings()
    assert s.server.port == 50051 and s.storage.data_dir == "./veclink-data"
    assert s.models["all-MiniLM-L6-v2"] == {"kind": "hf-text"}


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "veclink.toml"
    cfg.write_text('[server]\nport = 6000\nhost = "0.0.0.0"\n[storage]\ndata_dir = "/tmp/x"\n')
    s = load_settings(
        cfg,
        env={"VECLINK__SERVER__PORT": "7000", "VECLINK__AUTH__READ_KEYS": "a,b"},
        overrides={"storage": {"data_dir": "/tmp/y"}},
    )
    assert s.server.port == 7000
    assert s.server.host == "0.0.0.0"
    assert s.storage.data_dir == "/tmp/y"
    assert s.auth.read_keys == ("a", "b")


def test_every_error_reported_at_once(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[server]\nprot = 1\nport = "x"\n[storage]\ndefault_index_kind = "hnsw"\n[nope]\n'
    )
    with pytest.raises(InvalidArgument) as info:
        load_settings(cfg, env={})
    msg = str(info.value)
    for part in ("server.prot", "server.port", "storage.default_index_kind", "nope"):
        assert part in msg


def test_settings_are_frozen() -> None:
    s = load_settings(env={})
    with pytest.raises(AttributeError):
        s.server.port = 1  # type: ignore[misc]


def test_encoding_section_sets_the_batchers(tmp_path: Path) -> None:
    from veclink.service.server import build_store

    settings = load_settings(
        env={"VECLINK__ENCODING__MAX_WAIT_MS": "5", "VECLINK__STORAGE__DATA_DIR": str(tmp_path)},
        overrides={"encoding": {"batch_tokens": 512}},
    )
    assert settings.encoding.max_wait_ms == 5.0 and settings.encoding.batch_tokens == 512
    store = build_store(settings)
    try:
        policy = store.models.batching
        assert policy is not None
        assert (policy.max_wait_s, policy.batch_tokens, policy.max_batch) == (0.005, 512, 0)
    finally:
        store.close()
    off = build_store(
        load_settings(
            env={},
            overrides={
                "encoding": {"batching": False},
                "storage": {"data_dir": str(tmp_path / "b")},
            },
        )
    )
    try:
        assert off.models.batching is None
    finally:
        off.close()
    with pytest.raises(InvalidArgument, match="encoding.max_wait"):
        load_settings(env={}, overrides={"encoding": {"max_wait": 1}})
    with pytest.raises(InvalidArgument, match="encoding.max_wait_ms"):
        load_settings(env={}, overrides={"encoding": {"max_wait_ms": -1}})
