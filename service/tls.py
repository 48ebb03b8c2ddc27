"""TLS and mutual TLS for the gRPC port, from ``[server.tls]`` (PEM files read at start)."""

from __future__ import annotations

from pathlib import Path

import grpc
from veclink.service.settings import TlsSettings

from veclink.errors import InvalidArgument


def read_pem(path: str, field: str) -> bytes:
    """The bytes of a PEM file, or an error naming the setting that points at it.

    Raises:
        InvalidArgument: the file cannot be read or holds no PEM block.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"{field}: cannot read {path}: {exc.strerror}", field=field) from exc
    if b"-----BEGIN " not in data:
        raise InvalidArgument(f"{field}: {path} is not a PEM file", field=field)
    return data


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials | None:
    """Credentials for ``add_secure_port``; None when TLS is off (no cert and key).

    With ``client_ca`` set, client certificates must chain to it; ``require_client_cert``
    decides whether a client without one is refused (true) or let in (false).
    """
    if not (tls.cert and tls.key):
        return None
    pair = (read_pem(tls.key, "server.tls.key"), read_pem(tls.cert, "server.tls.cert"))
    client_ca = read_pem(tls.client_ca, "server.tls.client_ca") if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [pair],
        root_certificates=client_ca,
        require_client_auth=bool(client_ca) and tls.require_client_cert,
    )


def add_port(server: grpc.aio.Server, address: str, tls: TlsSettings) -> int:
    """Bind ``address``: TLS only when ``tls`` has a certificate, else plaintext.

    Returns:
        The bound port (0 when it could not be bound).
    """
    credentials = server_credentials(tls)
    if credentials is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, credentials)
