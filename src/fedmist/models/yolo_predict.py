"""``fedmist predict MODEL IMAGE...``: run a trained detector on images and write PNGs with boxes drawn.

The model is the job's MODEL_URL file (state dict + metadata JSON, loaded without unpickling) or an
ultralytics checkpoint (loaded through the same allowlist). Images are letterboxed exactly as in training,
and boxes are mapped back to the original pixels before drawing with ultralytics' ``Annotator``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def _unletterbox(boxes: np.ndarray, scale: float, pad: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    out = boxes.copy()
    out[:, [0, 2]] = ((boxes[:, [0, 2]] - pad[0]) / scale).clip(0, size[0])
    out[:, [1, 3]] = ((boxes[:, [1, 3]] - pad[1]) / scale).clip(0, size[1])
    return out


def predict_images(model_path: str | Path, images: list[Path], out: Path, *, conf: float = 0.25,
                   iou: float = 0.7, imgsz: int | None = None) -> list[tuple[Path, int]]:
    """Detect objects in ``images``; write ``out/<stem>.png`` each; return ``(png, number of boxes)`` pairs."""
    from fedmist.models.yolo_env import prepare_ultralytics

    prepare_ultralytics()
    from PIL import Image
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.plotting import Annotator, colors

    from fedmist.data.coco import letterbox
    from fedmist.models.yolo import load_yolo

    meta_path = Path(f"{model_path}.json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    weights = load_yolo(model_path, meta.get("architecture"))
    size = int(imgsz or meta.get("imgsz") or 640)
    model = weights.model.eval()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in images:
        try:
            with Image.open(path) as img:
                original = np.asarray(img.convert("RGB"))
                canvas, scale, pad = letterbox(img, size)
        except OSError as exc:
            raise ValueError(f"{path}: unreadable image ({exc})") from None
        except ImportError:
            # ultralytics patches Image.open to try HEIF through pi_heif when PIL cannot identify a file, so a
            # file that is not an image surfaces as ImportError (pi_heif is not installed), not as OSError
            raise ValueError(f"{path}: not an image (PIL cannot identify its format)") from None
        x = torch.from_numpy(canvas.transpose(2, 0, 1).copy())[None].float() / 255.0
        with torch.inference_mode():
            raw = model(x)
        det = non_max_suppression(raw[0] if isinstance(raw, (tuple, list)) else raw, conf, iou, nc=weights.nc)[0]
        det = det.numpy()
        boxes = _unletterbox(det[:, :4], scale, pad, (original.shape[1], original.shape[0]))
        annotator = Annotator(original.copy(), line_width=max(1, round(max(original.shape[:2]) / 300)), pil=True)
        for box, score, cls in zip(boxes, det[:, 4], det[:, 5].astype(int)):
            name = weights.names[cls] if cls < len(weights.names) else str(cls)
            annotator.box_label(box.tolist(), f"{name} {score:.2f}", color=colors(cls, True))
        target = out / f"{path.stem}.png"
        Image.fromarray(np.asarray(annotator.result())).save(target)
        written.append((target, len(det)))
    return written
