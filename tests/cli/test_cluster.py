"""fedmist.cli.cluster: ``render`` in-process, and ``operator``'s arguments and missing-kopf message."""

from __future__ import annotations

from pathlib import Path

import yaml

from fedmist.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist-mistnet" / "job.yaml"


def test_render_prints_the_jobs_objects_without_a_token_when_asked(capsys) -> None:
    assert main(["render", "-f", str(EXAMPLE), "--no-token-secret", "--no-owner-refs", "--image", "img:1"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    kinds = [d["kind"] for d in documents]
    assert "Pod" in kinds and "Service" in kinds
    assert not any(d["kind"] == "Secret" and d["metadata"]["name"].endswith("-fedmist-token") for d in documents)
    assert all("ownerReferences" not in d["metadata"] for d in documents)
    pods = [d for d in documents if d["kind"] == "Pod"]
    assert {c["image"] for p in pods for c in p["spec"]["containers"] if c["name"] != "status"} == {"img:1"}


def test_operator_without_kopf_is_a_usage_error(monkeypatch, capsys) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert main(["operator"]) == 2
    assert capsys.readouterr().err == "error: fedmist operator needs kopf: pip install 'fedmist[kube]'\n"


def test_operator_passes_namespace_interval_image_and_its_login(monkeypatch, tmp_path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(config))
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr("fedmist.launch.kube.operator.run_operator",
                        lambda namespace, interval, image, credentials:
                        calls.append((namespace, interval, image, credentials.current().server)) or 0)
    assert main(["operator", "--namespace", "ns", "--interval", "2.5", "--image", "i:2"]) == 0
    assert calls == [("ns", 2.5, "i:2", "https://127.0.0.1:6443")]


def test_render_options_default_to_the_placeholder_uid() -> None:
    import argparse

    from fedmist.cli import cluster
    from fedmist.launch.kube.names import DEFAULT_IMAGE, UID_PLACEHOLDER

    parser = argparse.ArgumentParser()
    cluster.add_commands(parser.add_subparsers(dest="command"))
    render = parser.parse_args(["render", "-f", "job.yaml"])
    assert (render.uid, render.image, render.no_owner_refs, render.func) == (UID_PLACEHOLDER, None, False,
                                                                             cluster.cmd_render)
    operator = parser.parse_args(["operator"])
    assert (operator.namespace, operator.interval, operator.image) == (None, 10.0, DEFAULT_IMAGE)
