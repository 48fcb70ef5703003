"""Make a pretrained YOLO file offline: train a detector on a public COCO-layout set (``fedmist pretrain-yolo``).

Why: the seed downloads a ``yolov5.pth``; fedmist never downloads, so the cloud's pretrained weights are made
from public data (e.g. a synthetic set from ``fedmist data synth-detection``). The result is a plain state
dict plus a metadata JSON (architecture, classes, image size) that ``load_yolo`` reads back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedmist.atomic import write_json_atomic


def pretrain_yolo(data: str | Path, out: str | Path, *, model: str = "yolov5n.yaml", epochs: int = 10,
                  imgsz: int = 320, batch_size: int = 16, lr: float = 0.002, seed: int = 0, threads: int = 2,
                  cut_layer: int | None = None, on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train ``model`` from scratch on the train split of ``data``; write ``out`` and ``out.json``.

    With a ``cut_layer`` (None: no cut) the pretraining is channel-aware: the edge output is binarized at the cut (with a
    straight-through gradient), so the cloud layers start out reading bits, as they will in the MistNet job.
    """
    from fedmist.models.yolo_env import prepare_ultralytics

    prepare_ultralytics()
    from fedmist.data.coco import DetectionDataset, read_class_names
    from fedmist.models.detect_extract import images_to_float
    from fedmist.models.detect_train import detection_loss, lr_at
    from fedmist.models.weights import save_weights
    from fedmist.models.yolo import build_yolo, yaml_name

    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    ds = DetectionDataset.open(data, imgsz)
    if len(ds) < 2 or epochs < 1:
        raise ValueError(f"pretraining needs at least 2 training images and 1 epoch (got {len(ds)} in {data}, "
                         f"{epochs} epochs)")
    names = read_class_names(data)
    images, labels = ds.batch(0, len(ds))
    nc = len(names) if names else int(max((int(lab[:, 0].max()) for lab in labels if len(lab)), default=0)) + 1
    names = names or [str(i) for i in range(nc)]
    arch = yaml_name(model)
    net = build_yolo(arch, nc)
    criterion = detection_loss(net)
    forward = net
    if cut_layer is not None:
        from fedmist.models.yolo_split import split_detection_model

        edge, cloud = split_detection_model(net, cut_layer)

        def forward(x: torch.Tensor):
            a = edge(x)
            bits = (a > 0).to(a.dtype)
            return cloud(a + (bits - a).detach())  # straight-through: forward bits, backward identity
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    rng = np.random.default_rng(seed)
    n, batch_size = len(ds), max(2, min(batch_size, len(ds)))
    steps = epochs * math.ceil(n / batch_size)
    started, step = time.monotonic(), 0
    for epoch in range(1, epochs + 1):
        net.train()
        t0, total, seen = time.perf_counter(), 0.0, 0
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:
                continue
            x = images_to_float(images[idx])
            boxes = [labels[i].copy() for i in idx]
            if rng.random() < 0.5:  # horizontal flip: the one augmentation that needs no care with boxes
                x = x.flip(-1)
                for b in boxes:
                    b[:, 1] = 1.0 - b[:, 1]
            batch = {"batch_idx": torch.cat([torch.full((len(b),), float(j)) for j, b in enumerate(boxes)]),
                     "cls": torch.from_numpy(np.concatenate([b[:, :1] for b in boxes])),
                     "bboxes": torch.from_numpy(np.concatenate([b[:, 1:5] for b in boxes]))}
            for group in opt.param_groups:
                group["lr"] = lr_at(step, steps, lr, min(100, max(1, steps // 10)))
            loss, _ = criterion(forward(x), batch)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            step += 1
            total += float(loss.detach().sum())  # the loss is already summed over the batch
            seen += len(idx)
        if on_epoch is not None:
            on_epoch(epoch, {"loss": total / max(1, seen), "seconds": time.perf_counter() - t0})
    path = save_weights(net.state_dict(), out)
    write_json_atomic(Path(f"{path}.json"), {"architecture": arch, "nc": nc, "names": names, "imgsz": imgsz,
                                             "epochs": epochs, "images": n, "source": str(data),
                                             "channel_cut_layer": cut_layer})
    return {"images": n, "seconds": time.monotonic() - started, "path": str(path)}
