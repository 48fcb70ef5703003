"""Which runtime (MistNet or the FedAvg family) a worker needs: classification (LeNet & co.) or detection (YOLO through ultralytics).

The seed's YOLO job never names its model (no ``model`` env), so the task is read from what the worker holds:
the aggregator from its pretrained file (an ultralytics checkpoint, or a state dict with a YOLO head), an edge
from its dataset (``format: dir`` in the COCO layout ``images/<split>``). An explicit ``model`` wins: a
``yolo...`` name means detection, any other name classification. Decided without importing ultralytics.
"""

from __future__ import annotations

from fedmist.worker.context import WorkerContext


def _edge_holds_detection_data(ctx: WorkerContext) -> bool:
    from pathlib import Path

    from fedmist.data.coco import find_split

    if ctx.dataset_format != "dir" or not ctx.dataset_url:
        return False
    if not Path(ctx.dataset_url).exists():
        return True  # the detection loader then names the missing folder
    try:
        find_split(ctx.dataset_url)
    except (OSError, ValueError):
        return False
    return True


def _aggregator_holds_yolo(ctx: WorkerContext) -> bool:
    from fedmist.models.yolo import looks_like_yolo_file

    return bool(ctx.pretrained_model_url) and looks_like_yolo_file(ctx.pretrained_model_url)


def is_detection(ctx: WorkerContext) -> bool:
    """True when this MistNet worker runs the detection task."""
    from fedmist.models.yolo import is_yolo_name

    if ctx.params.model:
        return is_yolo_name(ctx.params.model)
    holds = {"aggregator": _aggregator_holds_yolo, "trainer": _edge_holds_detection_data}[ctx.role]
    return holds(ctx)


def mistnet_family(ctx: WorkerContext) -> str:
    """``mistnet-detect`` for detection workers, else ``mistnet``."""
    return "mistnet-detect" if is_detection(ctx) else "mistnet"


def task_family(ctx: WorkerContext, family: str) -> str:
    """The runtime for a worker of ``family`` (``mistnet`` or ``rounds``): ``<family>-detect`` for YOLO detection."""
    return f"{family}-detect" if is_detection(ctx) else family
