"""Plain progress lines on a slow link: the upload's rate and ETA are shown, a new stage prints at once, and a
figure that merely moves prints at most every PLAIN_EVERY_S (a log is not a live table)."""

from __future__ import annotations

import io

from rich.console import Console

from fedmist.launch import progress
from fedmist.launch.status import ProcessState


def test_upload_figures_are_printed_and_throttled(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    view = progress.ProgressView("job", console=Console(file=out, width=200))
    processes = {"edge1": ProcessState("edge1", "trainer")}
    for step in range(10):  # 10 polls, 0.5 s apart, the rate changing every time
        clock[0] = step * 0.5
        upload = {"bytes_sent": 10_000 * step, "bytes_total": 100_000, "rate_bps": 80_000 + step, "eta_s": 10 - step}
        view.update(processes, {"edge1": {"stage": "uploading", "samples": 100, "upload": upload}})
    clock[0] = 5.0
    view.update(processes, {"edge1": {"stage": "done"}})
    lines = out.getvalue().splitlines()
    assert lines[0] == "[job] edge1: uploading 0 kB of 100 kB at 0.08 Mbit/s, ETA 10 s"
    assert len(lines) == 4, lines  # t=0, t=2, t=4 (every 2 s), then the new stage at once
    assert lines[-1] == "[job] edge1: done"
