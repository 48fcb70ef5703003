"""The seed's YOLOv5/COCO128 MistNet job (examples/) must load and resolve as written."""

from pathlib import Path

from fedmist.spec import load_manifests, resolve_job

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yolov5-coco128-mistnet" / "job.yaml"


def test_seed_example_resolves_with_path_map(tmp_path: Path) -> None:
    bundle = load_manifests([EXAMPLE], {"/data": str(tmp_path / "data"), "/model": str(tmp_path / "model"),
                                        "/pretrained": str(tmp_path / "pre")})
    assert bundle.warnings == []
    job = resolve_job(bundle, environ={})
    assert job.name == "yolo-v5" and job.transmitter == "s3" and job.agg_data_path == "s3://sedna/fl/aggregation_data"
    assert [w.name for w in job.workers] == ["cloud-node", "edge1-node", "edge2-node"]
    agg = job.params_for(job.aggregator)
    assert (agg.aggregation_algorithm, agg.cut_layer, agg.epsilon, agg.epochs, agg.batch_size) == ("mistnet", 4, 100.0, 100, 32)
    trainer = job.params_for(job.trainers[1])
    assert (trainer.epochs, trainer.learning_rate) == (1, 0.001)
    assert job.aggregator.memory_limit_bytes == 8 * 2**30
    assert [t.memory_limit_bytes for t in job.trainers] == [2 * 2**30, 2 * 2**30]
    assert [t.args for t in job.trainers] == [("-i", "1"), ("-i", "2")]
    assert [t.dataset_url for t in job.trainers] == [str(tmp_path / "data" / "1" / "COCO"), str(tmp_path / "data" / "2" / "COCO")]
    assert job.model_url == str(tmp_path / "model" / "yolov5.pth")
    assert job.pretrained_model_url == str(tmp_path / "pre" / "yolov5.pth")
    assert job.aggregator.image == "kubeedge/sedna-example-federated-learning-mistnet-yolo-aggregator:v0.4.0"


def test_seed_example_node_variables_expand_from_environment() -> None:
    job = resolve_job(load_manifests([EXAMPLE]), environ={"CLOUD_NODE": "cloud", "EDGE1_NODE": "kubeedge1",
                                                         "EDGE2_NODE": "kubeedge1"})
    assert [w.name for w in job.workers] == ["cloud", "kubeedge1-1", "kubeedge1-2"]
