"""The MistNet job with the S3 transmitter, against a real S3-compatible server (moto's standalone server as
its own process on 127.0.0.1), spoken to only through boto3."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import boto3
import pytest
import yaml

from e2e_helpers import REPO, fedmist
from test_mistnet_e2e import _job_yaml, _run

pytestmark = pytest.mark.e2e


@pytest.fixture()
def s3_server():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    yield endpoint
    proc.terminate()
    proc.wait(10)


def test_mistnet_over_s3_succeeds_and_cleans_up(small_fmnist, tmp_path, s3_server):
    job_path = _job_yaml(tmp_path)
    docs = list(yaml.safe_load_all(job_path.read_text()))
    job = next(d for d in docs if d["kind"] == "FederatedLearningJob")
    job["spec"]["transmitter"] = {"s3": {"aggDataPath": "s3://fedmist-test/fl/aggregation_data",
                                         "credentialName": "local-s3"}}
    docs.append({"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "local-s3", "annotations": {"s3-endpoint": s3_server.removeprefix("http://"),
                                                                  "s3-usehttps": "0"}},
                 "stringData": {"ACCESS_KEY_ID": "testing", "SECRET_ACCESS_KEY": "testing"}})
    job_path.write_text(yaml.safe_dump_all(docs, sort_keys=False))

    result, status = _run(job_path, small_fmnist, tmp_path)
    assert result.returncode == 0, (status.get("conditions"), result.stderr[-2000:])
    assert status["metrics"]["accuracy"] > 0.72
    for name in ("edge1", "edge2"):
        # the records went to S3 (148 B per image); the websocket carried only control messages
        assert 148 * 3000 <= status["workers"][name]["bytes_up"] <= 150 * 3000
    log = (tmp_path / "run" / "logs" / "edge1.log").read_text()
    assert "via s3" in log
    client = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    assert client.list_objects_v2(Bucket="fedmist-test").get("KeyCount", 0) == 0  # removed: keep_payloads unset
