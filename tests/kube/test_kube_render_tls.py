"""A job naming a channel Secret (``transmitter.ws.credentialName``) renders pods that mount only the TLS
files their role needs and take the token from that Secret."""

from __future__ import annotations

from pathlib import Path

import yaml
from kube_helpers import MNIST, by_name, env_of, render

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _job(tmp_path: Path, **values: str) -> Path:
    docs = list(yaml.safe_load_all(MNIST.read_text()))
    job = next(d for d in docs if d["kind"] == "FederatedLearningJob")
    job["spec"]["transmitter"] = {"ws": {"credentialName": "fl-channel"}}
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fl-channel"}, "stringData": values})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_tls_secret_is_mounted_per_role_and_the_token_comes_from_it(tmp_path: Path) -> None:
    objects = render(_job(tmp_path, **{"tls.crt": PEM, "tls.key": PEM, "ca.crt": PEM, "token": "user-token"}))
    aggregator, trainer = by_name(objects, "Pod", "mnist-mistnet-cloud"), by_name(objects, "Pod", "mnist-mistnet-edge1")
    token = {"secretKeyRef": {"name": "fl-channel", "key": "token"}}
    agg_env, trainer_env = env_of(aggregator), env_of(trainer)
    assert agg_env["FEDMIST_TOKEN"] == token and trainer_env["FEDMIST_TOKEN"] == token
    assert (agg_env["FEDMIST_TLS_CERT"], agg_env["FEDMIST_TLS_KEY"]) == ("/etc/fedmist/tls/tls.crt",
                                                                          "/etc/fedmist/tls/tls.key")
    assert trainer_env["FEDMIST_TLS_CA"] == "/etc/fedmist/tls/ca.crt" and "FEDMIST_TLS_KEY" not in trainer_env
    for pod, keys in ((aggregator, ["tls.crt", "tls.key"]), (trainer, ["ca.crt"])):
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "fedmist-tls")
        assert volume["secret"]["secretName"] == "fl-channel"
        assert [item["key"] for item in volume["secret"]["items"]] == keys  # a trainer never sees the key
        mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "fedmist-tls")
        assert mount == {"name": "fedmist-tls", "mountPath": "/etc/fedmist/tls", "readOnly": True}
    import kubernetes_validate
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30", strict=True)


def test_a_token_only_secret_mounts_nothing(tmp_path: Path) -> None:
    objects = render(_job(tmp_path, token="user-token"))
    trainer = by_name(objects, "Pod", "mnist-mistnet-edge1")
    assert env_of(trainer)["FEDMIST_TOKEN"] == {"secretKeyRef": {"name": "fl-channel", "key": "token"}}
    assert "FEDMIST_TLS_CA" not in env_of(trainer)
    assert all(v["name"] != "fedmist-tls" for v in trainer["spec"]["volumes"])
