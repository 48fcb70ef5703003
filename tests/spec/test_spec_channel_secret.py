"""``spec.transmitter.ws.credentialName``: a Secret with the aggregator's TLS certificate and/or the job token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fedmist.spec import ManifestError, load_manifests, resolve_job

WriteJob = Callable[..., Path]
PEM = "-----BEGIN CERTIFICATE-----\\n...\\n-----END CERTIFICATE-----\\n"


def _secret(**values: str) -> str:
    lines = "".join(f'  {key}: "{value}"\n' for key, value in values.items())
    return f"---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: chan\nstringData:\n{lines}"


def _write(write_job: WriteJob, job_yaml: str, **values: str) -> Path:
    return write_job(job_yaml + _secret(**values), replace=((
        "  aggregationWorker:", "  transmitter:\n    ws:\n      credentialName: chan\n  aggregationWorker:"),))


def _resolve(path: Path):  # type: ignore[no-untyped-def]
    return resolve_job(load_manifests([path]), environ={})


def test_tls_secret_and_token_are_resolved(write_job: WriteJob, job_yaml: str) -> None:
    job = _resolve(_write(write_job, job_yaml, **{"tls.crt": PEM, "tls.key": PEM, "ca.crt": PEM, "token": "t0k"}))
    secret = job.channel_secret
    assert secret is not None and secret.has_tls and secret.token == "t0k"
    assert secret.cert_pem.startswith("-----BEGIN CERTIFICATE-----\n")


def test_a_token_only_secret_keeps_generated_tls(write_job: WriteJob, job_yaml: str) -> None:
    secret = _resolve(_write(write_job, job_yaml, token="t0k")).channel_secret
    assert secret is not None and not secret.has_tls and secret.token == "t0k"
    assert _resolve(write_job()).channel_secret is None


@pytest.mark.parametrize(("values", "problem"), [
    ({"tls.crt": PEM, "tls.key": PEM}, "Secret/chan: data.ca.crt: a TLS Secret needs all of tls.crt, tls.key, "
                                       "ca.crt; ca.crt missing"),
    ({"tls.crt": PEM, "tls.key": "nope", "ca.crt": PEM}, "Secret/chan: data.tls.key: must be PEM text (-----BEGIN ...)"),
    ({"other": "x"}, "Secret/chan: data: names neither TLS keys (tls.crt, tls.key, ca.crt) nor a 'token'"),
])
def test_bad_channel_secrets_name_the_key(write_job: WriteJob, job_yaml: str, values: dict, problem: str) -> None:
    path = _write(write_job, job_yaml, **values)
    with pytest.raises(ManifestError) as info:
        _resolve(path)
    assert str(info.value) == f"{path}: {problem}"


def test_a_missing_channel_secret_is_named(write_job: WriteJob) -> None:
    path = write_job(replace=(("  aggregationWorker:", "  transmitter:\n    ws:\n      credentialName: gone\n"
                                                        "  aggregationWorker:"),))
    with pytest.raises(ManifestError) as info:
        _resolve(path)
    assert str(info.value) == (f"{path}: FederatedLearningJob/mnist-mistnet: spec.transmitter.ws.credentialName: "
                               "no Secret named 'gone' is defined (got 'gone')")
