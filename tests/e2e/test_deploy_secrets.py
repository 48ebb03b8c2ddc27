"""deploy/make-secrets.sh writes what deploy/compose.yaml mounts, and a server configured by
compose's environment from those files serves TLS with API keys."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from veclink.service.settings import load_settings

from tests.fixtures import deploy
from tests.fixtures.server import RunningServer
from veclink.client import Client, PermissionDenied, Unavailable

yaml = pytest.importorskip("yaml")
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

SCRIPT = deploy.DEPLOY / "make-secrets.sh"


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("deploy") / "secrets"
    subprocess.run(["sh", str(SCRIPT), str(folder)], check=True, capture_output=True, timeout=120)
    return folder


def _compose() -> dict[str, object]:
    return yaml.safe_load((deploy.DEPLOY / "compose.yaml").read_text())


def test_script_writes_every_file_compose_mounts_and_keeps_them(secrets: Path) -> None:
    wanted = {Path(s["file"]).name for s in _compose()["secrets"].values()}  # type: ignore[attr-defined]
    assert {p.name for p in secrets.iterdir()} == wanted
    before = {p.name: p.read_bytes() for p in secrets.iterdir()}
    subprocess.run(["sh", str(SCRIPT), str(secrets)], check=True, capture_output=True, timeout=60)
    assert {p.name: p.read_bytes() for p in secrets.iterdir()} == before
    assert oct(secrets.stat().st_mode & 0o777) == "0o700"
    assert len(set(before.values())) == len(before)  # every key and password is its own
    assert before["postgres_password"].strip().isalnum()  # URL-safe inside the catalog URL


def test_compose_environment_serves_tls_with_api_keys(secrets: Path, tmp_path: Path) -> None:
    compose = _compose()
    service = compose["services"]["veclink"]  # type: ignore[index]
    env = {k: str(v) for k, v in service["environment"].items()}
    # the container's paths, mapped to the files here: /run/secrets/NAME -> the secret's file
    files = {
        f"/run/secrets/{name}": str(secrets / Path(s["file"]).name)
        for name, s in compose["secrets"].items()  # type: ignore[attr-defined]
    }
    env = {k: files.get(v, v) for k, v in env.items() if k != "VECLINK__STORAGE__DATABASE_URL"}
    env.update(
        VECLINK__SERVER__HOST="127.0.0.1",
        VECLINK__SERVER__PORT="0",
        VECLINK__SERVER__METRICS_PORT="0",
        VECLINK__STORAGE__DATA_DIR=str(tmp_path / "data"),
    )
    settings = load_settings(env=env)
    assert settings.server.tls.cert and settings.auth.write_keys_file
    running = RunningServer(settings)
    ca = (secrets / "tls.crt").read_bytes()
    write = (secrets / "write_keys").read_text().strip()
    read = (secrets / "read_keys").read_text().strip()
    try:
        with Client(running.address, timeout=10, root_certificates=ca, api_key=write) as c:
            c.create_collection("v", dimensions=2)
        with Client(running.address, timeout=10, root_certificates=ca, api_key=read) as c:
            assert [x.name for x in c.list_collections()] == ["v"]
            with pytest.raises(PermissionDenied):
                c.delete_collection("v")
        with Client(running.address, timeout=10, root_certificates=ca) as c:
            with pytest.raises(PermissionDenied):
                c.list_collections()
        with Client(running.address, timeout=10, api_key=write) as plain:
            with pytest.raises(Unavailable):
                plain.list_collections()
    finally:
        running.stop()
