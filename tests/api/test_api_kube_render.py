"""`fedmist render` of a job with a user loader: the import path stays as it is; its path options are mounted."""

from __future__ import annotations

from pathlib import Path

import yaml

from fedmist.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom-model"


def test_render_mounts_the_loaders_data_folder_not_the_import_path(tmp_path, capsys):
    text = ((EXAMPLE / "mistnet.yaml").read_text().replace("root=./data", "root=/data/pngs")
            .replace("url: ./pretrained/cnn.pth", "url: /models/pre/cnn.pth")
            .replace("url: ./model/cnn-mistnet.pth", "url: /models/out/cnn.pth"))
    (tmp_path / "job.yaml").write_text(text)
    assert main(["render", "-f", str(tmp_path / "job.yaml"), "--image", "fedmist/worker:0.1"]) == 0
    pods = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d and d["kind"] == "Pod"]
    edge1 = next(p for p in pods if p["spec"].get("nodeName") == "edge1")
    env = {e["name"]: e.get("value") for e in edge1["spec"]["containers"][0]["env"]}
    assert env["TRAIN_DATASET_URL"] == "fmnist_cnn.data:load_pngs?split=edge1&root=/data/pngs"
    # the data folder, and the trainer's own state folder (noise seed, privacy ledger) that outlives the pod
    assert [v["hostPath"]["path"] for v in edge1["spec"]["volumes"] if "hostPath" in v] == [
        "/data/pngs", "/var/lib/fedmist/edges/default/edge1"]
    cloud = next(p for p in pods if p["spec"].get("nodeName") == "cloud")
    # ... and the aggregator's state folder (checkpoints, feature store), keyed by job uid and spec digest
    paths = sorted(v["hostPath"]["path"] for v in cloud["spec"]["volumes"] if "hostPath" in v)
    assert paths[:3] == ["/data/pngs", "/models/out", "/models/pre"]
    assert len(paths) == 4 and paths[3].startswith("/var/lib/fedmist/jobs/default/")
