"""mAP matching with exact values."""

from __future__ import annotations

import numpy as np
import torch

from fedmist.models.detect_eval import DetectionMeter, match, xywhn_to_xyxy
from fedmist.models.yolo_env import prepare_ultralytics


def test_match_at_each_iou_threshold():
    prepare_ultralytics()
    gt_cls = np.array([0.0, 1.0], dtype=np.float32)
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    pred = np.array([[0, 0, 10, 10, 0.9, 0],      # exact: correct at every threshold
                     [0, 0, 10, 8, 0.8, 0],       # IoU 0.8 with gt 0, but gt 0 is taken
                     [20, 20, 30, 27.2, 0.7, 1],  # IoU 0.72: correct up to 0.70
                     [20, 20, 30, 30, 0.6, 0]],   # right place, wrong class
                    dtype=np.float32)
    correct = match(pred, gt_cls, gt)
    assert correct[0].all() and not correct[1].any() and not correct[3].any()
    assert correct[2].tolist() == [True] * 5 + [False] * 5


def test_perfect_predictions_score_one():
    prepare_ultralytics()
    labels = [np.array([[2, 0.5, 0.5, 0.25, 0.5]], dtype=np.float32)]
    size, nc = 64, 3
    box = xywhn_to_xyxy(labels[0][:, 1:], size)[0]
    raw = torch.zeros(1, 4 + nc, 5)
    raw[0, :4, 0] = torch.tensor([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]])
    raw[0, 4 + 2, 0] = 0.95
    meter = DetectionMeter(nc)
    meter.add(raw, labels, size)
    result = meter.result()
    assert result["mAP50"] > 0.99 and result["mAP50-95"] > 0.99


def test_nms_has_no_time_limit_so_a_busy_cpu_does_not_lower_map(monkeypatch):
    """ultralytics' NMS returns what it has after 2 s + 50 ms per image; on a loaded machine that silently
    dropped whole images' detections. The meter must score every image whatever the clock says."""
    import itertools

    prepare_ultralytics()
    import ultralytics.utils.nms as nms

    clock = itertools.count(0.0, 100.0)  # every reading of the clock is 100 s after the previous one
    monkeypatch.setattr(nms.time, "time", lambda: next(clock))
    raw = torch.zeros(3, 4 + 2, 8)
    raw[:, :4] = torch.tensor([16.0, 16.0, 8.0, 8.0])[None, :, None] + torch.arange(8.0) * 20  # 8 apart boxes
    raw[:, 4] = 0.9
    meter = DetectionMeter(nc=2)
    meter.add(raw, [np.array([[0, 0.1, 0.1, 0.05, 0.05]], dtype=np.float32)] * 3, 320)
    assert [len(s) for s in meter.scores] == [8, 8, 8]
