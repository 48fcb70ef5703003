"""status.json and the progress display show each edge's epsilon and privacy figures, and the job's floor."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from fedmist.launch.progress import ProgressView
from fedmist.launch.status import JobStatus, ProcessState
from fedmist.privacy.accounting import job_privacy_report

PRIVACY = job_privacy_report(4.0, None, {"edge1": (1.0, None), "edge2": (4.0, None)}, 1176, num_classes=10)
AGG_REPORT = {"stage": "training", "epoch": 1, "epochs": 2, "privacy": PRIVACY, "history": [],
              "workers": {"edge1": {"phase": "Uploaded", "samples": 3, "epsilon": "1.0", "label_epsilon": ""},
                          "edge2": {"phase": "Uploaded", "samples": 3, "epsilon": "4.0", "label_epsilon": ""}}}
PROCESSES = {"cloud": ProcessState("cloud", "aggregator", pid=1), "edge1": ProcessState("edge1", "trainer", pid=2),
             "edge2": ProcessState("edge2", "trainer", pid=3)}


def test_status_names_each_edges_epsilon_and_figures_and_keeps_the_floor_on_top():
    status = JobStatus("job").to_dict(list(PROCESSES.values()), {"cloud": AGG_REPORT})
    edge1 = status["workers"]["edge1"]
    assert (edge1["epsilon"], edge1["label_epsilon"]) == ("1.0", "")
    assert edge1["privacy"]["epsilon_per_sample"] == 1176.0 and status["workers"]["edge2"]["privacy"][
        "epsilon_per_sample"] == 4704.0
    privacy = status["metrics"]["privacy"]
    assert privacy["epsilon_floor"] == 4.0 and privacy["epsilon_per_sample"] == 4704.0  # the top level: the floor
    assert privacy["features_per_sample"] == 1176 and sorted(privacy["edges"]) == ["edge1", "edge2"]


def test_progress_lines_show_each_edges_epsilon_and_the_floor():
    out = io.StringIO()
    view = ProgressView("job", console=Console(file=out, width=200, force_terminal=False))
    view.update(PROCESSES, {"cloud": AGG_REPORT, "edge1": {"stage": "uploading"}, "edge2": {"stage": "done"}})
    assert out.getvalue().splitlines() == ["[job] cloud: training epoch 1/2  eps 4.0 (floor)",
                                           "[job] edge1: uploading  eps 1.0", "[job] edge2: done  eps 4.0"]
    out.truncate(0)
    out.seek(0)
    view.summary("Succeeded", {"metrics": {"accuracy": 0.5, "privacy": PRIVACY}, "elapsed_s": 3}, Path("w"))
    assert out.getvalue().splitlines()[1] == "epsilon per feature: floor 4.0; edge1 1.0, edge2 4.0"
