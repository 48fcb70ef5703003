"""A FedAvg job secured with the user's own certificate and token (a Secret named by
``spec.transmitter.ws.credentialName``), attacked while it runs: a client with a wrong token, one that trusts
another CA, one whose HELLO was altered on the way, one sending a frame of another session and one claiming a
connected worker's name each get their documented error, the aggregator logs the peer and the reason, and the job still succeeds with its two legit
trainers untouched."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from e2e_helpers import REPO
from test_fedavg_e2e import _command, _job_yaml, _status

from fedmist.transport import ws
from fedmist.transport.base import AuthenticationError, TransportError
from fedmist.transport.security import Security
from fedmist.wire.envelope import Envelope, encode

pytestmark = pytest.mark.e2e

TOKEN = "user-token-from-the-secret-0123456789"


def _pem(obj) -> str:  # type: ignore[no-untyped-def]
    if hasattr(obj, "private_bytes"):
        return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
    return obj.public_bytes(serialization.Encoding.PEM).decode()


def _user_pki(common_name: str) -> dict[str, str]:
    """A CA of the user's own (not fedmist's) and a server certificate for 127.0.0.1 that it signed."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Edge Ops"),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA384()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fl-aggregator.example")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA384()))
    return {"tls.crt": _pem(cert), "tls.key": _pem(key), "ca.crt": _pem(ca)}


def _secure_job(tmp_path: Path, pki: dict[str, str]) -> Path:
    path = _job_yaml(tmp_path, exit_round="4")
    docs = list(yaml.safe_load_all(path.read_text()))
    job = next(d for d in docs if d["kind"] == "FederatedLearningJob")
    job["spec"]["transmitter"] = {"ws": {"credentialName": "fl-channel"}}
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fl-channel"}, "type": "kubernetes.io/tls",
                 "stringData": {**pki, "token": TOKEN}})
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _reason(frame: bytes) -> str:
    """The reason of an ERROR frame read without its MAC (a rogue cannot verify the aggregator's MAC)."""
    length = int.from_bytes(frame[:4], "big")
    header = json.loads(frame[4:4 + length])
    assert header["type"] == "error", header
    return header["meta"]["reason"]


async def _hello_and_reply(url: str, security: Security, frame_edit=None,  # type: ignore[no-untyped-def]
                           worker: str = "rogue") -> tuple[str, str]:
    """Connect as ``worker`` (the handshake proves the token), send a HELLO (MAC'd with this session's key,
    then edited), return (the aggregator's reply reason, this client's address as the aggregator sees it)."""
    channel = await ws.connect(url, security=dataclasses.replace(security, job="mnist-fedavg", worker=worker),
                               timeout=10)
    hello = Envelope(type="hello", job="mnist-fedavg", worker=worker,
                     meta={"role": "trainer", "num_samples": 100, "dataset": ""})
    frame = channel.seal(hello)
    if frame_edit is not None:
        frame = frame_edit(frame)
    address = "%s:%d" % channel.local_address
    await channel.send_raw(frame)
    reply = await channel.recv_raw(10)
    await channel.close()
    return _reason(reply), address


def test_user_ca_job_refuses_rogues_and_succeeds(fedavg_data, tmp_path):
    pki = _user_pki("Example Edge Ops Root CA")
    other = _user_pki("Someone Else's CA")
    (tmp_path / "user-ca.crt").write_text(pki["ca.crt"])
    (tmp_path / "other-ca.crt").write_text(other["ca.crt"])
    job = _secure_job(tmp_path, pki)
    proc = subprocess.Popen(_command(job, fedavg_data, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        agg_log = tmp_path / "run" / "logs" / "cloud.log"
        deadline = time.monotonic() + 90
        port = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"listening on wss://[0-9.]+:(\d+)", agg_log.read_text() if agg_log.exists() else "")
            if found and _status(tmp_path).get("progress", {}).get("round", 0) >= 1:
                port = int(found.group(1))
                break
            time.sleep(0.05)
        assert port, f"the job never started round 1: {proc.poll()}"
        url = f"wss://127.0.0.1:{port}"
        trusting = Security.from_files(TOKEN, ca=str(tmp_path / "user-ca.crt"))

        # (i) a wrong token: the handshake fails, the aggregator names the claimed worker and refuses it
        wrong_token = Security(token="not-the-token", client_ssl=trusting.client_ssl, job="mnist-fedavg",
                               worker="rogue")
        with pytest.raises(AuthenticationError) as refused_token:
            asyncio.run(ws.connect(url, security=wrong_token, timeout=10))
        assert str(refused_token.value) == (f"{url}: the aggregator refused this worker: worker 'rogue' presented "
                                            "a wrong token")

        # (ii) a client that trusts another CA refuses the aggregator's certificate (and never sends a byte)
        with pytest.raises(AuthenticationError) as refused:
            asyncio.run(ws.connect(url, security=Security.from_files(TOKEN, ca=str(tmp_path / "other-ca.crt"),
                                                                     job="mnist-fedavg", worker="rogue"), timeout=10))
        assert str(refused.value) == (f"cannot verify the server at {url}: certificate verify failed: unable to get "
                                      "local issuer certificate (the CA this worker trusts did not sign the "
                                      "aggregator's certificate)")

        # (iii) the right token, but the HELLO altered on the way (num_samples 100 -> 900): the MAC fails
        def tamper(frame: bytes) -> bytes:
            assert b'"num_samples":100' in frame
            return frame.replace(b'"num_samples":100', b'"num_samples":900')
        reason, tampered_address = asyncio.run(_hello_and_reply(url, trusting, tamper))
        tampered = ("frame MAC mismatch ('hello' claiming worker 'rogue'): altered, replayed or reordered in "
                    "transit, or sent in another session")
        assert reason == tampered

        # (iv) a frame of another session (MAC'd with that session's key) fails the same way
        def relay(frame: bytes) -> bytes:
            other = Envelope(type="hello", job="mnist-fedavg", worker="rogue", meta={
                "role": "trainer", "num_samples": 100, "dataset": ""})
            return encode(other, b"", hashlib.sha256(b"another session's key").digest())
        reason, _ = asyncio.run(_hello_and_reply(url, trusting, relay))
        assert reason == tampered

        # (v) a client speaking plain ws to the wss port gets no websocket at all
        with pytest.raises(TransportError) as plain:
            asyncio.run(ws.connect(f"ws://127.0.0.1:{port}", security=Security(TOKEN, job="mnist-fedavg",
                                                                               worker="rogue"), timeout=10))
        assert str(plain.value) == (f"cannot connect to ws://127.0.0.1:{port}: the server closed the "
                                     "connection during the websocket handshake")

        # (vi) the right token and CA, claiming a worker that is connected and answering: refused, and edge1
        # keeps its place (no loss, no restart below)
        reason, duplicate_address = asyncio.run(_hello_and_reply(url, trusting, worker="edge1"))
        assert re.fullmatch(r"worker 'edge1' is already connected \(from 127\.0\.0\.1:\d+, which still answers\)",
                            reason), reason

        _, stderr = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    status = _status(tmp_path)
    assert proc.returncode == 0, stderr[-2000:]
    assert status["phase"] == "Succeeded"
    history = status["metrics"]["history"]
    assert len(history) == 4 and all(h["participants"] == 2 and h["lost"] == 0 for h in history), history
    assert status["metrics"]["accuracy"] > 0.6
    assert set(status["workers"]) == {"edge1", "edge2"}
    assert all(w["phase"] == "Succeeded" and w["restarts"] == 0 for w in status["workers"].values()), status["workers"]
    log = agg_log.read_text()
    assert re.search(r"rejected 127\.0\.0\.1:\d+ \(worker \?\): worker 'rogue' presented a wrong token\n", log), log
    assert f"rejected {tampered_address} (worker ?): {tampered}" in log
    assert f"rejected {duplicate_address} (worker ?): {reason}" in log
    # (ii) and (v) fail inside the TLS handshake: the aggregator names the peer and the reason, one line each
    # (the client's alert or its reset may reach the aggregator first: both name the untrusted CA)
    assert re.search(r"rejected 127\.0\.0\.1:\d+: TLS handshake failed: (TLSV1_ALERT_UNKNOWN_CA \(the client does "
                     r"not trust the CA that signed this aggregator's certificate\)|the client hung up "
                     r"\(ConnectionResetError; a client that does not trust the CA that signed this aggregator's "
                     r"certificate does this\))\n", log), log
    assert re.search(r"rejected 127\.0\.0\.1:\d+: TLS handshake failed: HTTP_REQUEST \(the client spoke plain ws "
                     r"to the wss port\)\n", log), log
    assert sorted(re.findall(r"worker (\S+) connected from", log)) == ["edge1", "edge2"]
    # the launcher used the Secret's certificate, not a per-job CA
    assert (tmp_path / "run" / "tls" / "ca.crt").read_text() == pki["ca.crt"]


def test_a_tls_secret_whose_key_does_not_match_is_a_one_line_error(fedavg_data, tmp_path):
    pki, other = _user_pki("Example Edge Ops Root CA"), _user_pki("Someone Else's CA")
    job = _secure_job(tmp_path, {**pki, "tls.key": other["tls.key"]})
    result = subprocess.run(_command(job, fedavg_data, tmp_path), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {job}: Secret of spec.transmitter.ws.credentialName: tls.crt/tls.key "
                                    "do not load as a certificate and its key: KEY_VALUES_MISMATCH")
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run" / "logs" / "cloud.log").exists()


def _aggregator(tmp_path: Path, **env: str) -> subprocess.Popen:
    """A real aggregator process (``fedmist worker aggregate``, what a pod runs) listening on every interface
    over plain ws: no TLS files in its env."""
    import os
    import sys

    contract = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                "JOB_NAME": "j", "WORKER_NAME": "cloud", "aggregation_algorithm": "fedavg", "model": "lenet5",
                "PARTICIPANTS_COUNT": "1", "FEDMIST_TOKEN": TOKEN, "FEDMIST_BIND_HOST": "0.0.0.0",
                "AGG_BIND_PORT": "0", "FEDMIST_STATE_DIR": str(tmp_path / "state"),
                "MODEL_URL": str(tmp_path / "model.pth"), **env}
    return subprocess.Popen([sys.executable, "-m", "fedmist", "worker", "aggregate"], env=contract, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


PLAIN_RISK = ("frames stay authenticated and the token never crosses the wire, but the feature bits, labels and model "
              "weights cross the network unencrypted, readable by anyone on the path")


def test_plain_ws_off_loopback_needs_allow_plain_ws_and_then_warns(tmp_path):
    refused = _aggregator(tmp_path)
    try:
        _, stderr = refused.communicate(timeout=120)
    finally:
        if refused.poll() is None:  # it served instead of refusing
            refused.kill()
            refused.wait()
    assert refused.returncode == 2, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].endswith(
        'ERROR fedmist.worker: bad job configuration: serving plain ws on 0.0.0.0 (not a loopback address) needs '
        'allow_plain_ws: "true" in the job, or a TLS Secret (spec.transmitter.ws.credentialName): over plain ws '
        + PLAIN_RISK)

    allowed = _aggregator(tmp_path, allow_plain_ws="true")
    try:
        lines: list[str] = []
        assert allowed.stderr is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("listening on ws://0.0.0.0:" in line for line in lines):
            line = allowed.stderr.readline()
            if not line:
                break
            lines.append(line)
    finally:
        allowed.kill()
        allowed.wait()
    text = "".join(lines)
    assert "listening on ws://0.0.0.0:" in text, text[-2000:]
    assert f"WARNING fedmist.worker: serving plain ws on 0.0.0.0 (allow_plain_ws): {PLAIN_RISK}\n" in text
