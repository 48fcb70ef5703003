"""Frame MACs, job TLS and their failures: tampering, a wrong key, a wrong place in the session and a wrong CA
each fail with their error."""

from __future__ import annotations

import asyncio

import pytest

from fedmist.transport import ws
from fedmist.transport.base import AuthenticationError
from fedmist.transport.handshake import accept
from fedmist.transport.security import Security
from fedmist.transport.tls import make_job_pki
from fedmist.wire.envelope import Envelope, ProtocolError, decode, encode

KEY = bytes(range(32))
OTHER = bytes(32)


def test_mac_round_trip_and_tampering_is_detected():
    frame = bytearray(encode(Envelope(type="fit", job="j", worker="w", kind="raw"), b"weights", mac_key=KEY))
    env, body = decode(bytes(frame), mac_key=KEY)
    assert bytes(body) == b"weights" and env.type == "fit"
    frame[10] ^= 0x01  # a relay flips one bit of the header
    with pytest.raises(ProtocolError, match="frame MAC mismatch"):
        decode(bytes(frame), mac_key=KEY)
    with pytest.raises(ProtocolError, match="frame MAC mismatch"):
        decode(encode(Envelope(type="fit", job="j", worker="w"), mac_key=OTHER), mac_key=KEY)
    tampered_body = bytearray(encode(Envelope(type="fit", job="j", worker="w", kind="raw"), b"weights", mac_key=KEY))
    tampered_body[-1] ^= 0xFF  # the body is covered through the MAC'd blake3 digest
    with pytest.raises(ProtocolError, match="body blake3 mismatch"):
        decode(bytes(tampered_body), mac_key=KEY)


def test_a_frame_is_bound_to_its_place_in_the_session():
    """The MAC covers the frame's implicit sequence number: the same bytes at another place (replayed,
    reordered, one dropped before it) fail, with the one-line reason every refusal uses."""
    frame = encode(Envelope(type="fit", job="j", worker="w"), mac_key=KEY, seq=4)
    assert decode(frame, mac_key=KEY, seq=4)[0].type == "fit"
    for seq in (3, 5, 0):
        with pytest.raises(ProtocolError) as refused:
            decode(frame, mac_key=KEY, seq=seq)
        assert str(refused.value) == ("frame MAC mismatch ('fit' claiming worker 'w'): altered, replayed or "
                                      "reordered in transit, or sent in another session")


def _echo_once(token: str):
    """A server that authenticates one client with ``token`` (the handshake), then echoes one frame."""
    async def handler(channel):
        await accept(channel, token, "j", 5)
        envelope, body = await channel.recv(5)
        await channel.send(envelope, body)
        await channel.close()
    return handler


def _round_trip(server_security: Security, client_security: Security, scheme: str) -> bytes:
    async def main():
        server = await ws.serve(_echo_once(server_security.token), "127.0.0.1", 0, security=server_security)
        port = server.sockets[0].getsockname()[1]
        try:
            channel = await ws.connect(f"{scheme}://127.0.0.1:{port}", security=client_security, timeout=5)
            await channel.send(Envelope(type="t", job="j", worker="w", kind="raw"), b"over tls")
            _, body = await channel.recv(5)
            await channel.close()
            return bytes(body)
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def test_wss_with_the_job_ca_works_and_a_wrong_ca_is_refused(tmp_path):
    job = make_job_pki(tmp_path / "job", "job", ["127.0.0.1"])
    other = make_job_pki(tmp_path / "other", "other", ["127.0.0.1"])
    server = Security.from_files("tok", cert=str(job.cert), key=str(job.key))
    good = Security.from_files("tok", ca=str(job.ca), job="j", worker="w")
    assert _round_trip(server, good, "wss") == b"over tls"
    wrong_ca = Security.from_files("tok", ca=str(other.ca), job="j", worker="w")
    with pytest.raises(AuthenticationError, match="cannot verify the server"):
        _round_trip(server, wrong_ca, "wss")
    assert (job.key.stat().st_mode & 0o777) == 0o600


def test_missing_tls_file_is_named():
    with pytest.raises(FileNotFoundError, match="TLS file not found: /nope/ca.crt"):
        Security.from_files("tok", ca="/nope/ca.crt")


def test_tls_secret_files_must_load(tmp_path) -> None:
    from fedmist.transport.tls import write_tls_files

    job = make_job_pki(tmp_path / "job", "job", ["127.0.0.1"])
    other = make_job_pki(tmp_path / "other", "other", ["127.0.0.1"])
    files = write_tls_files(tmp_path / "ok", job.cert.read_text(), job.key.read_text(), job.ca.read_text())
    assert files.key.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError, match="tls.crt/tls.key do not load as a certificate and its key"):
        write_tls_files(tmp_path / "bad", job.cert.read_text(), other.key.read_text(), job.ca.read_text())
