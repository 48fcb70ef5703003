"""Detection metrics (mAP50, mAP50-95) from ultralytics' NMS and ``ap_per_class``, on the cloud's outputs.

Predictions are matched to ground truth per image at the ten IoU thresholds 0.50:0.05:0.95, one prediction per
ground-truth box, highest IoU first (the COCO rule); ``ap_per_class`` then integrates precision-recall.
"""

from __future__ import annotations

import numpy as np
import torch

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
NMS_NO_TIME_LIMIT = 1e6  # seconds per image: evaluation must not depend on the machine's load


def xywhn_to_xyxy(boxes: np.ndarray, size: int) -> np.ndarray:
    """Normalised ``cx cy w h`` -> pixel ``x1 y1 x2 y2``."""
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, 0] = (boxes[:, 0] - boxes[:, 2] / 2) * size
    out[:, 1] = (boxes[:, 1] - boxes[:, 3] / 2) * size
    out[:, 2] = (boxes[:, 0] + boxes[:, 2] / 2) * size
    out[:, 3] = (boxes[:, 1] + boxes[:, 3] / 2) * size
    return out


def match(pred: np.ndarray, gt_cls: np.ndarray, gt_xyxy: np.ndarray) -> np.ndarray:
    """``(n, 10)`` bool: prediction ``i`` is a true positive at threshold ``j``."""
    from ultralytics.utils.metrics import box_iou

    correct = np.zeros((len(pred), len(IOU_THRESHOLDS)), dtype=bool)
    if len(pred) == 0 or len(gt_cls) == 0:
        return correct
    iou = box_iou(torch.from_numpy(gt_xyxy), torch.from_numpy(pred[:, :4].astype(np.float32))).numpy()
    iou = iou * (gt_cls[:, None] == pred[None, :, 5])
    for j, threshold in enumerate(IOU_THRESHOLDS):
        gi, pi = np.nonzero(iou >= threshold)
        if len(gi) == 0:
            continue
        order = np.argsort(-iou[gi, pi], kind="stable")
        gi, pi = gi[order], pi[order]
        _, first_pred = np.unique(pi, return_index=True)
        gi, pi = gi[first_pred], pi[first_pred]
        order = np.argsort(-iou[gi, pi], kind="stable")
        gi, pi = gi[order], pi[order]
        _, first_gt = np.unique(gi, return_index=True)
        correct[pi[first_gt], j] = True
    return correct


class DetectionMeter:
    """Accumulates per-image matches; :meth:`result` gives mAP50, mAP50-95, precision and recall."""

    def __init__(self, nc: int, conf: float = 0.001, iou: float = 0.7, max_det: int = 300) -> None:
        self.nc, self.conf, self.iou, self.max_det = nc, conf, iou, max_det
        self.tp: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.pred_cls: list[np.ndarray] = []
        self.target_cls: list[np.ndarray] = []

    def add(self, raw: torch.Tensor, labels: list[np.ndarray], size: int) -> None:
        """``raw``: the head's eval output ``(B, 4 + nc, anchors)``; ``labels``: per image ``(n, 5)`` normalised."""
        from ultralytics.utils.nms import non_max_suppression

        # no time limit: ultralytics' NMS stops after 2 s + 50 ms per image and returns what it has, which on a
        # busy CPU (an untrained detector keeps thousands of boxes above conf 0.001) silently lowers mAP
        kept = non_max_suppression(raw, self.conf, self.iou, max_det=self.max_det, nc=self.nc,
                                   max_time_img=NMS_NO_TIME_LIMIT)
        for det, lab in zip(kept, labels):
            pred = det.detach().cpu().numpy()
            gt_cls = lab[:, 0].astype(np.float32)
            self.tp.append(match(pred, gt_cls, xywhn_to_xyxy(lab[:, 1:5], size)))
            self.scores.append(pred[:, 4])
            self.pred_cls.append(pred[:, 5])
            self.target_cls.append(gt_cls)

    def result(self) -> dict[str, float]:
        from ultralytics.utils.metrics import ap_per_class

        target = np.concatenate(self.target_cls) if self.target_cls else np.zeros(0)
        tp = np.concatenate(self.tp) if self.tp else np.zeros((0, 10), dtype=bool)
        if len(target) == 0:
            raise ValueError("the validation set has no boxes: mAP is undefined")
        if len(tp) == 0:
            return {"mAP50": 0.0, "mAP50-95": 0.0, "precision": 0.0, "recall": 0.0}
        out = ap_per_class(tp, np.concatenate(self.scores), np.concatenate(self.pred_cls), target)
        p, r, ap = out[2], out[3], out[5]
        return {"mAP50": float(ap[:, 0].mean()) if len(ap) else 0.0,
                "mAP50-95": float(ap.mean()) if len(ap) else 0.0,
                "precision": float(p.mean()) if len(p) else 0.0, "recall": float(r.mean()) if len(r) else 0.0}
