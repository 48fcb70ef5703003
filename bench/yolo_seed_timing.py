"""The seed's own setting, timed: yolov5s at 640 px, cut 4, batch 32 (examples/yolov5-coco128-mistnet/job.yaml).

A short run of a few batches is enough for a rate: seconds per image of one MistNet cloud epoch (modules 4..24
trained on bits with the shared detection loop) and of one FedAvg local epoch (the whole detector on images,
examples/yolov5-coco128-fedavg), on this machine's CPU or on ``--device cuda``. COCO128 has 80 classes and
128 images per edge, so the seed's 100 cloud epochs over 2 x 128 images take ``100 * 256 * rate`` seconds.

    nice -n 10 .venv/bin/python bench/yolo_seed_timing.py --batches 2
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov5s.yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--cut", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=2, help="timed batches per measurement (after one warm-up)")
    ap.add_argument("--full-batch", type=int, default=8,
                    help="batch of the FedAvg (whole-model) timing: at 640 px a batch of 32 needs ~11 GB on a CPU; the "
                         "rate per image hardly depends on it (0: skip that timing)")
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from fedmist.models.yolo_env import prepare_ultralytics

    prepare_ultralytics()
    from fedmist.models.detect_extract import detection_feature_shape
    from fedmist.models.detect_train import detection_loss, train_detection
    from fedmist.models.device import describe, resolve_device
    from fedmist.models.yolo import build_yolo
    from fedmist.models.yolo_split import split_detection_model

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rng = np.random.default_rng(0)

    def targets(n: int) -> dict[str, torch.Tensor]:
        k = 4 * n
        return {"batch_idx": torch.arange(n).repeat_interleave(4).float(),
                "cls": torch.from_numpy(rng.integers(0, args.nc, (k, 1)).astype(np.float32)),
                "bboxes": torch.from_numpy(rng.uniform(0.2, 0.5, (k, 4)).astype(np.float32))}

    def rate(module: torch.nn.Module, criterion, make_input, batch: int) -> float:
        batches = [(make_input(), targets(batch), batch) for _ in range(args.batches + 1)]
        times: list[float] = []

        def source(epoch: int):
            for batch in batches:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter())
                yield batch
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())

        train_detection(module, criterion, source, epochs=1, lr=0.001, steps_per_epoch=len(batches))
        return (times[-1] - times[1]) / (args.batches * batch)  # the first batch warms up

    model = build_yolo(args.model, args.nc)
    edge, cloud = split_detection_model(model, args.cut)
    shape = detection_feature_shape(edge, args.imgsz)
    cloud.to(device)
    cloud_rate = rate(cloud, detection_loss(model), lambda: (torch.rand(args.batch, *shape) > 0.5).float(), args.batch)
    print(f"{args.model} {args.imgsz}px cut {args.cut} batch {args.batch} on {describe(device)}, {args.threads} threads: "
          f"MistNet cloud {cloud_rate:.3f} s/image/epoch (features {list(shape)}); the seed's 100 cloud epochs over "
          f"2 x 128 images: {100 * 256 * cloud_rate / 3600:.1f} h", flush=True)
    del cloud, edge, model
    if args.full_batch:
        model = build_yolo(args.model, args.nc).to(device)
        full = args.full_batch
        full_rate = rate(model, detection_loss(model), lambda: torch.rand(full, 3, args.imgsz, args.imgsz), full)
        print(f"FedAvg local step (whole model, batch {full}): {full_rate:.3f} s/image/epoch; 100 rounds of one "
              f"local epoch over 128 images per edge: {100 * 128 * full_rate / 3600:.1f} h per edge", flush=True)


if __name__ == "__main__":
    main()
