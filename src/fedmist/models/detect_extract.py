"""Edge side of MistNet for detection: letterboxed images -> edge part -> binarize + randomized response ->
packed bits, followed by each image's boxes (the record layout of :mod:`fedmist.wire.detect_records`).

Batches are small at large image sizes: at 640 px the first YOLOv5s modules hold ~100 MB of activations per
8 images, and the seed gives edges a 2 GiB memory limit.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from fedmist.data.coco import DetectionDataset
from fedmist.privacy.channel import binarize, pack_bits, randomized_response
from fedmist.wire.detect_records import encode_boxes

log = logging.getLogger("fedmist.trainer")


def extract_batch_size(imgsz: int) -> int:
    """Images per edge forward pass: 8 at 640 px, more for smaller images (never fewer than 2)."""
    return int(max(2, min(64, 8 * 640 * 640 // (imgsz * imgsz))))


def images_to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(B, 3, S, S)`` RGB -> float32 in [0, 1] (ultralytics' input scaling)."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)


def detection_feature_shape(edge: nn.Module, imgsz: int) -> tuple[int, ...]:
    """Shape of one image's edge output at ``imgsz``, from a probe pass."""
    was = edge.training
    edge.eval()
    with torch.inference_mode():
        out = edge(torch.zeros((2, 3, imgsz, imgsz)))
    edge.train(was)
    return tuple(out.shape[1:])


def edge_bits(edge: nn.Module, images: np.ndarray) -> torch.Tensor:
    """Clean channel bits ``(B, r)`` bool of one batch (eval mode, no grad)."""
    with torch.inference_mode():
        return binarize(edge(images_to_float(images))).flatten(1)


class DetectionRecordStream:
    """The edge's records as chunks ``(first_index, bytes)``; counts edge compute, hashes everything sent."""

    def __init__(self, edge: nn.Module, data: DetectionDataset, epsilon: float, seed: int | None,
                 batch_size: int, noise: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> None:
        """``noise`` (clean bits, first index) -> noisy bits: the edge's keyed noise; else seeded RR at eps."""
        self.edge, self.data, self.epsilon, self.batch_size = edge, data, epsilon, max(2, batch_size)
        self.gen = np.random.default_rng(None if seed is None else int(seed))
        self.noise = noise
        self.digest = hashlib.sha256()
        self.compute_s = 0.0
        self.load_s = 0.0
        self.dropped_boxes = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        self.edge.eval()
        for start in range(0, len(self.data), self.batch_size):
            t0 = time.perf_counter()
            images, labels = self.data.batch(start, start + self.batch_size)
            t1 = time.perf_counter()
            bits = edge_bits(self.edge, images)
            noisy = self.noise(bits, start) if self.noise else randomized_response(bits, self.epsilon, self.gen)
            packed = pack_bits(noisy.numpy())
            self.compute_s += time.perf_counter() - t1
            self.load_s += t1 - t0
            blocks, counts, dropped = encode_boxes(labels)
            self.dropped_boxes += dropped
            data = np.concatenate([packed, blocks, counts[:, None]], axis=1).tobytes()
            self.digest.update(data)
            yield start, data
        if self.dropped_boxes:
            log.warning("dropped %d boxes beyond the per-image limit of the record layout", self.dropped_boxes)
