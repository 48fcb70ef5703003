"""How a channel is protected: TLS (wss) contexts, the job token, and the per-frame MAC key derived from it.

The token authenticates a worker in its HELLO; the MAC key (never sent) lets each side detect a frame
altered in transit; TLS keeps the bits and weights private on the wire and lets trainers verify the server.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fedmist.wire.envelope import Envelope, MacMismatch, ProtocolError

if TYPE_CHECKING:
    from fedmist.transport.base import Channel


def derive_mac_key(token: str) -> bytes:
    """A key for frame MACs, derived from the job token so the token itself never keys two purposes."""
    return hmac.new(token.encode(), b"fedmist frame mac v1", hashlib.sha256).digest()


@dataclass(frozen=True)
class Security:
    """Everything a transport needs to protect one job's channels. The default protects nothing."""

    token: str = ""
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None

    @property
    def mac_key(self) -> bytes | None:
        return derive_mac_key(self.token) if self.token else None

    @property
    def scheme(self) -> str:
        return "wss" if (self.server_ssl or self.client_ssl) else "ws"

    @classmethod
    def from_files(cls, token: str, cert: str = "", key: str = "", ca: str = "") -> "Security":
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
        return cls(token=token, server_ssl=server, client_ssl=client)


def explain_first_frame(exc: MacMismatch, token: str) -> ProtocolError:
    """Why a connection's first frame failed its MAC, for the log and the error reply.

    The MAC key derives from the token, so a worker holding the wrong token fails the MAC before its HELLO
    is read. Its HELLO (unverified) still carries the token it holds: when that differs from the job's, say
    "wrong token"; when it matches, the frame itself was altered on the way (or relayed from elsewhere).
    """
    claimed = exc.claimed
    meta = claimed.get("meta") if isinstance(claimed.get("meta"), dict) else {}
    presented = meta.get("token") if claimed.get("type") == "hello" else None
    if isinstance(presented, str) and not hmac.compare_digest(presented.encode(), token.encode()):
        return ProtocolError(f"worker {str(claimed.get('worker', '?'))[:80]!r} presented a wrong token")
    return exc


async def recv_first(channel: "Channel", timeout: float, token: str) -> tuple[Envelope, memoryview]:
    """A server's first receive on a new connection: a MAC failure there is explained (wrong token or
    altered frame) instead of reported as a bare MAC mismatch."""
    try:
        return await channel.recv(timeout)
    except MacMismatch as exc:
        raise explain_first_frame(exc, token) from None
