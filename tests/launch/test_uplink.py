"""The launcher's upload figures: bytes the aggregator stored of the edge's total, the rate over a window,
the ETA -- and a stalled link shows as a falling rate, not as the whole upload's average."""

from __future__ import annotations

from fedmist.launch.status import JobStatus, ProcessState
from fedmist.launch.uplink import UplinkMeter, upload_text


def _reports(received: int, phase: str = "Uploading") -> dict:
    return {"cloud": {"workers": {"edge1": {"phase": phase, "samples": 1000, "received": received,
                                            "bytes_up": received * 150}}},
            "edge1": {"stage": "uploading", "samples": 1000, "upload_total": 148_000}}


def test_rate_bytes_and_eta_follow_what_the_aggregator_stored_and_reach_status_json():
    meter = UplinkMeter()
    for t, received in ((0.0, 0), (1.0, 100), (2.0, 200)):  # 100 records = 14.8 kB per second
        reports = _reports(received)
        meter.observe("cloud", reports, now=t)
    upload = reports["edge1"]["upload"]
    assert upload["bytes_sent"] == 29_600 and upload["bytes_total"] == 148_000
    assert upload["rate_bps"] == 118_400
    assert upload["eta_s"] == 8.0
    assert upload_text(upload) == "30 kB of 148 kB at 0.12 Mbit/s, ETA 8 s"
    processes = [ProcessState("cloud", "aggregator"), ProcessState("edge1", "trainer")]
    status = JobStatus("j").to_dict(processes, reports)
    assert status["workers"]["edge1"]["upload"] == upload


def test_a_stall_drops_the_rate_within_the_window():
    meter = UplinkMeter()
    for t in range(0, 5):
        meter.observe("cloud", _reports(100 * t), now=float(t))
    for t in range(5, 12):  # the link went down at t=4: nothing more arrives
        reports = _reports(400)
        meter.observe("cloud", reports, now=float(t))
    upload = reports["edge1"]["upload"]
    assert upload["rate_bps"] == 0 and upload["eta_s"] is None


def test_a_finished_upload_has_no_time_left():
    meter = UplinkMeter()
    meter.observe("cloud", _reports(1000, phase="Uploaded"), now=0.0)
    reports = _reports(1000, phase="Uploaded")
    meter.observe("cloud", reports, now=1.0)
    assert reports["edge1"]["upload"]["eta_s"] == 0.0 and reports["edge1"]["upload"]["bytes_sent"] == 148_000
