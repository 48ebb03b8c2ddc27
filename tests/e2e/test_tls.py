"""TLS and mutual TLS on the gRPC port; API keys from files and the environment."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from veclink.service.settings import load_settings

from tests.fixtures.certs import Authority
from tests.fixtures.server import RunningServer, server_settings
from veclink.client import Client, PermissionDenied, Unavailable
from veclink.errors import InvalidArgument

pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two unrelated CAs; the server's certificate and a good client's come from the first."""
    d = tmp_path_factory.mktemp("pki")
    ca, other = Authority(d, "veclink"), Authority(d, "stranger")
    return {
        "ca": ca,
        "other": other,
        "server": ca.issue("server", server=True),
        "client": ca.issue("client", server=False),
        "stranger": other.issue("client", server=False),
    }


def _tls(pki: dict[str, object], mutual: bool) -> dict[str, object]:
    server = pki["server"]
    tls: dict[str, object] = {"cert": str(server.cert), "key": str(server.key)}  # type: ignore[attr-defined]
    if mutual:
        tls["client_ca"] = str(pki["ca"].pem)  # type: ignore[attr-defined]
    return tls


@pytest.fixture(scope="module")
def tls_server(
    pki: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    settings = server_settings(tmp_path_factory.mktemp("tls"), server={"tls": _tls(pki, False)})
    running = RunningServer(settings)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def mtls_server(
    pki: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    settings = server_settings(tmp_path_factory.mktemp("mtls"), server={"tls": _tls(pki, True)})
    running = RunningServer(settings)
    yield running
    running.stop()


def _client(address: str, ca: Path | None = None, cert: object = None) -> Client:
    return Client(
        address,
        timeout=10,
        root_certificates=ca.read_bytes() if ca else None,
        certificate_chain=cert.cert.read_bytes() if cert else None,  # type: ignore[attr-defined]
        private_key=cert.key.read_bytes() if cert else None,  # type: ignore[attr-defined]
    )


def test_tls_client_works_plaintext_refused(
    tls_server: RunningServer, pki: dict[str, object]
) -> None:
    with _client(tls_server.address, pki["ca"].pem) as c:  # type: ignore[attr-defined]
        c.create_collection("c", dimensions=2)
        assert [x.name for x in c.list_collections()] == ["c"]
    with Client(tls_server.address, timeout=10) as plain, pytest.raises(Unavailable):
        plain.list_collections()
    # a server certificate from a CA the client does not trust is refused by the client
    with (
        _client(tls_server.address, pki["other"].pem) as wary,  # type: ignore[attr-defined]
        pytest.raises(Unavailable),
    ):
        wary.list_collections()


def test_mutual_tls_checks_the_client_certificate(
    mtls_server: RunningServer, pki: dict[str, object]
) -> None:
    ca = pki["ca"].pem  # type: ignore[attr-defined]
    with _client(mtls_server.address, ca, pki["client"]) as good:
        assert good.list_collections() == []
    for cert in (None, pki["stranger"]):  # no certificate; one from another CA
        with _client(mtls_server.address, ca, cert) as bad, pytest.raises(Unavailable):
            bad.list_collections()
    with Client(mtls_server.address, timeout=10) as plain, pytest.raises(Unavailable):
        plain.list_collections()


def test_cli_speaks_tls_with_key_from_environment(pki: dict[str, object], tmp_path: Path) -> None:
    keys = tmp_path / "write.keys"
    keys.write_text("# operators\nsecret-write-key-123\n\n")
    settings = server_settings(
        tmp_path / "data",
        server={"tls": _tls(pki, True)},
        auth={"write_keys_file": str(keys)},
    )
    running = RunningServer(settings)
    client_cert = pki["client"]
    flags = [
        "--server",
        running.address,
        "--tls-ca",
        str(pki["ca"].pem),  # type: ignore[attr-defined]
        "--tls-cert",
        str(client_cert.cert),  # type: ignore[attr-defined]
        "--tls-key",
        str(client_cert.key),  # type: ignore[attr-defined]
    ]

    def cli(*args: str, key: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "VECLINK_API_KEY"}
        if key is not None:
            env["VECLINK_API_KEY"] = key
        return subprocess.run(
            [sys.executable, "-m", "veclink.cli", *args, *flags],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    try:
        r = cli("collection", "create", "c", "--dim", "2", key="secret-write-key-123")
        assert r.returncode == 0, r.stderr
        r = cli("collection", "list", key="wrong")
        assert r.returncode == 1 and "UNAUTHENTICATED" in r.stderr
        r = cli("collection", "list", key=None)
        assert r.returncode == 1 and "missing API key" in r.stderr
        flags[2:] = []  # plaintext to a TLS server: the hint names the TLS flags
        r = cli("collection", "list", key="secret-write-key-123")
        assert r.returncode == 1 and "--tls-ca" in r.stderr
    finally:
        running.stop()


def test_api_keys_from_files_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "read.keys").write_text("reader-key-abc  # the dashboards\n")
    (tmp_path / "write.keys").write_text("writer-key-xyz\n")
    caplog.set_level(logging.DEBUG)
    settings = server_settings(
        tmp_path / "data",
        auth={
            "read_keys_file": str(tmp_path / "read.keys"),
            "write_keys_file": str(tmp_path / "write.keys"),
        },
    )
    assert "writer-key-xyz" not in repr(settings)
    running = RunningServer(settings)
    try:
        with Client(running.address, api_key="writer-key-xyz") as w:
            w.create_collection("c", dimensions=2)
        with Client(running.address, api_key="reader-key-abc") as r:
            assert [c.name for c in r.list_collections()] == ["c"]
            with pytest.raises(PermissionDenied, match="read-only"):
                r.delete_collection("c")
        with Client(running.address, api_key="nope") as anon, pytest.raises(PermissionDenied):
            anon.list_collections()
    finally:
        running.stop()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "writer-key-xyz" not in logged and "reader-key-abc" not in logged


def test_tls_and_key_settings_checked(tmp_path: Path) -> None:
    settings = load_settings(
        env={
            "VECLINK__SERVER__TLS__CERT": "/c.pem",
            "VECLINK__SERVER__TLS__KEY": "/k.pem",
            "VECLINK__AUTH__WRITE_KEYS": "a,b",
        }
    )
    assert settings.server.tls.cert == "/c.pem" and settings.auth.write_keys == ("a", "b")
    with pytest.raises(InvalidArgument, match="cert and key go together"):
        load_settings(env={}, overrides={"server": {"tls": {"cert": "/c.pem"}}})
    (tmp_path / "empty.keys").write_text("# nobody yet\n")
    empty = server_settings(tmp_path / "d", auth={"write_keys_file": str(tmp_path / "empty.keys")})
    with pytest.raises(InvalidArgument, match="holds no key"):
        RunningServer(empty)
    missing = server_settings(tmp_path / "d", server={"tls": {"cert": "/no.pem", "key": "/no"}})
    with pytest.raises(InvalidArgument, match="server.tls.key"):
        RunningServer(missing)
