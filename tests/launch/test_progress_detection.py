"""The live progress line of a detection aggregator shows the last epoch's loss and mAP50."""

from fedmist.launch.progress import _stage_text


def test_detection_epoch_shows_loss_and_map():
    report = {"stage": "training", "epoch": 2, "epochs": 100,
              "history": [{"epoch": 2, "loss": 11.5726, "test_mAP50": 0.1234, "test_mAP50-95": 0.05}]}
    assert _stage_text(report) == "training epoch 2/100  loss 11.573  mAP50 0.123"
