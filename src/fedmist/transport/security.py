"""How a channel is protected: TLS (wss) contexts, the job token, and who this side is in the handshake.

The token never crosses the wire: the handshake (``transport.handshake``) proves each side holds it and
derives per-session frame keys from it; TLS keeps the bits and weights private on the wire and lets trainers
verify the server's certificate.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Security:
    """Everything a transport needs to protect one job's channels. The default protects nothing.

    ``job``/``worker``/``role`` are what a client's handshake claims (and binds its session keys to)."""

    token: str = ""
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None
    job: str = ""
    worker: str = ""
    role: str = "trainer"

    @property
    def scheme(self) -> str:
        return "wss" if (self.server_ssl or self.client_ssl) else "ws"

    @classmethod
    def from_files(cls, token: str, cert: str = "", key: str = "", ca: str = "", job: str = "",
                   worker: str = "") -> "Security":
        """Server side needs ``cert`` + ``key``; a client needs ``ca`` to verify the server. Missing files
        are an error naming the file, never a silent fall-back to plain ws."""
        for path in (cert, key, ca):
            if path and not Path(path).is_file():
                raise FileNotFoundError(f"TLS file not found: {path}")
        server = None
        if cert and key:
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.minimum_version = ssl.TLSVersion.TLSv1_2
            server.load_cert_chain(cert, key)
        client = None
        if ca:
            client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
            client.minimum_version = ssl.TLSVersion.TLSv1_2
        return cls(token=token, server_ssl=server, client_ssl=client, job=job, worker=worker)
