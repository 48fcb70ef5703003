"""MistNet and FedAvg jobs with the S3 transmitter, against a real S3-compatible server (moto's standalone server as
its own process on 127.0.0.1), spoken to only through boto3."""

from __future__ import annotations

import subprocess
from pathlib import Path

import boto3
import pytest
import yaml
from e2e_helpers import REPO
from test_fedavg_e2e import LENET5_FLOAT32_BYTES, _command, _status
from test_fedavg_e2e import _job_yaml as _fedavg_job_yaml
from test_mistnet_e2e import _job_yaml, _run

pytestmark = pytest.mark.e2e


def use_s3(job_path: Path, endpoint: str) -> None:
    """Switch the job in ``job_path`` to the S3 transmitter on ``endpoint`` (credentials in a Secret)."""
    docs = list(yaml.safe_load_all(job_path.read_text()))
    job = next(d for d in docs if d["kind"] == "FederatedLearningJob")
    job["spec"]["transmitter"] = {"s3": {"aggDataPath": "s3://fedmist-test/fl/aggregation_data",
                                         "credentialName": "local-s3"}}
    docs.append({"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "local-s3", "annotations": {"s3-endpoint": endpoint.removeprefix("http://"),
                                                                  "s3-usehttps": "0"}},
                 "stringData": {"ACCESS_KEY_ID": "testing", "SECRET_ACCESS_KEY": "testing"}})
    job_path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def _bucket_keys(endpoint: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    return [item["Key"] for item in client.list_objects_v2(Bucket="fedmist-test").get("Contents", [])]


def test_mistnet_over_s3_succeeds_and_cleans_up(small_fmnist, tmp_path, s3_server):
    job_path = _job_yaml(tmp_path)
    use_s3(job_path, s3_server)

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


def test_fedavg_over_s3_moves_weights_as_objects_and_cleans_up(fedavg_data, tmp_path, s3_server):
    """Global and updated weights go through S3 (multipart, SHA-256 checked); the websocket carries keys."""
    job_path = _fedavg_job_yaml(tmp_path, exit_round="3")
    use_s3(job_path, s3_server)
    result = subprocess.run(_command(job_path, fedavg_data, tmp_path), capture_output=True, text=True,
                            timeout=150, cwd=REPO)
    status = _status(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert status["phase"] == "Succeeded"
    metrics = status["metrics"]
    assert metrics["accuracy"] > 0.6, metrics
    for h in metrics["history"]:  # bytes count the objects: about one model each way per worker and round
        assert h["participants"] == 2
        assert LENET5_FLOAT32_BYTES < h["bytes_up"] / 2 <= 1.02 * LENET5_FLOAT32_BYTES, h
        assert LENET5_FLOAT32_BYTES < h["bytes_down"] / 2 <= 1.02 * LENET5_FLOAT32_BYTES, h
    log = (tmp_path / "run" / "logs" / "cloud.log").read_text()
    assert "removed 9 payload objects of job mnist-fedavg from S3" in log  # 3 global models + 2 x 3 updates
    assert _bucket_keys(s3_server) == []
