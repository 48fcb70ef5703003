"""Plain ws beyond loopback is the job's explicit choice (``allow_plain_ws``): without it a worker whose channel
would be plain ws on a network refuses with one line; with it, it warns once what plain ws does not protect."""

from __future__ import annotations

import logging

import pytest

from fedmist.spec.params import ParamError
from fedmist.transport.tls import make_job_pki
from fedmist.worker.context import ContextError, WorkerContext

RISK = ("frames stay authenticated and the token never crosses the wire, but the feature bits, labels and model "
        "weights cross the network unencrypted, readable by anyone on the path")


def _ctx(role: str, **env: str) -> WorkerContext:
    return WorkerContext.from_env(role, {"JOB_NAME": "j", "WORKER_NAME": "edge1", "FEDMIST_TOKEN": "t", **env})


def test_a_trainer_dialling_plain_ws_off_loopback_refuses_without_the_setting() -> None:
    with pytest.raises(ContextError) as refused:
        _ctx("trainer", AGG_IP="j-aggregation.default").security()
    assert str(refused.value) == (
        'plain ws to the aggregator at j-aggregation.default (not a loopback address) needs allow_plain_ws: "true" '
        "in the job, or a TLS Secret (spec.transmitter.ws.credentialName): over plain ws " + RISK)


def test_an_aggregator_serving_plain_ws_off_loopback_refuses_without_the_setting() -> None:
    with pytest.raises(ContextError) as refused:
        _ctx("aggregator", FEDMIST_BIND_HOST="0.0.0.0").security()
    assert str(refused.value).startswith('serving plain ws on 0.0.0.0 (not a loopback address) needs allow_plain_ws: '
                                         '"true" in the job')


def test_with_the_setting_both_sides_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fedmist.worker"):
        trainer = _ctx("trainer", AGG_IP="10.1.2.3", allow_plain_ws="true")
        security = trainer.security()
        trainer.security()  # a reconnect: no second warning
        _ctx("aggregator", FEDMIST_BIND_HOST="10.1.2.4", ALLOW_PLAIN_WS="True").security()
    assert security.scheme == "ws" and (security.job, security.worker, security.token) == ("j", "edge1", "t")
    assert [r.getMessage() for r in caplog.records] == [
        f"plain ws to the aggregator at 10.1.2.3 (allow_plain_ws): {RISK}",
        f"serving plain ws on 10.1.2.4 (allow_plain_ws): {RISK}"]


def test_loopback_and_tls_need_no_setting(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    pki = make_job_pki(tmp_path, "j", ["127.0.0.1"])
    with caplog.at_level(logging.WARNING, logger="fedmist.worker"):
        for host in ("127.0.0.1", "localhost", "::1", "127.0.0.9"):
            _ctx("trainer", AGG_IP=host).security()
            _ctx("aggregator", FEDMIST_BIND_HOST=host).security()
        assert _ctx("trainer", AGG_IP="10.9.9.9", FEDMIST_TLS_CA=str(pki.ca)).security().scheme == "wss"
        assert _ctx("aggregator", FEDMIST_BIND_HOST="0.0.0.0", FEDMIST_TLS_CERT=str(pki.cert),
                    FEDMIST_TLS_KEY=str(pki.key)).security().scheme == "wss"
    assert caplog.records == []


def test_the_setting_is_a_boolean() -> None:
    with pytest.raises(ParamError, match="allow_plain_ws.*must be true or false"):
        _ctx("trainer", allow_plain_ws="yes please")
