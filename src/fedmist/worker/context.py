"""What a worker process knows about its job: the env contract of DESIGN section 4, read once at start.

Nothing is read at import time; ``WorkerContext.from_env`` is called by the entrypoint, so the same code runs
under the local launcher and in a Kubernetes pod.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from fedmist.spec.params import DEFAULT_AGG_PORT, JobParams, parse_params, with_defaults
from fedmist.transport.security import Security

log = logging.getLogger("fedmist.worker")

#: What a job accepts with ``allow_plain_ws``, said in the refusal and in the warning.
PLAIN_WS_RISK = ("frames stay authenticated and the token never crosses the wire, but the feature bits, labels "
                 "and model weights cross the network unencrypted, readable by anyone on the path")
_warned_plain: set[str] = set()


class ContextError(Exception):
    """The process environment lacks or garbles a contract variable. One line naming the variable."""


@dataclass(frozen=True)
class WorkerContext:
    role: str
    job: str
    namespace: str
    worker: str
    participants: int
    transmitter: str
    params: JobParams
    model_url: str
    pretrained_model_url: str
    agg_bind_port: int
    agg_ip: str
    agg_port: int
    dataset_url: str
    dataset_name: str
    dataset_format: str
    token: str
    bind_host: str
    status_file: Path | None
    state_dir: Path
    threads: int
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    agg_data_path: str = ""
    s3_endpoint_url: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""

    def s3(self):
        """The S3 transmitter when ``TRANSMITTER=s3`` (boto3 is imported only then), else None."""
        if self.transmitter != "s3":
            return None
        from fedmist.transport.s3 import S3Error, S3Location, S3Transmitter

        try:
            location = S3Location.parse(self.agg_data_path)
        except S3Error as exc:
            raise ContextError(f"AGG_DATA_PATH: {exc}") from None
        return S3Transmitter(location, self.s3_endpoint_url, self.access_key_id, self.secret_access_key)

    def carrier(self):
        """How this worker moves model weights: inline frames for ws, S3 objects for ``TRANSMITTER=s3``."""
        from fedmist.transport.carrier import S3Carrier, WsCarrier

        transmitter = self.s3()
        if transmitter is None:
            return WsCarrier()
        return S3Carrier(transmitter, self.payload_key, transmitter.location.key(self.job) + "/")

    def payload_key(self, worker: str, name: str) -> str:
        """Object key of one payload: ``<prefix>/<job>/<worker>/<name>``."""
        from fedmist.transport.s3 import S3Location

        return S3Location.parse(self.agg_data_path).key(self.job, worker, name)

    def security(self) -> Security:
        """TLS contexts and the handshake's token and identity for this worker's channels (from FEDMIST_TLS_*
        and FEDMIST_TOKEN). Plain ws beyond loopback is refused unless the job set ``allow_plain_ws``."""
        self._check_plain_ws()
        try:
            return Security.from_files(self.token, self.tls_cert, self.tls_key, self.tls_ca, job=self.job,
                                       worker=self.worker)
        except (OSError, ValueError) as exc:
            raise ContextError(f"TLS setup failed: {exc}") from None

    def _check_plain_ws(self) -> None:
        """Why: without TLS nothing on the wire is confidential, and on a network (not loopback) that must be
        the job's explicit choice. With ``allow_plain_ws`` it is, and the worker says so once at start."""
        if self.role == "aggregator":
            plain, host = not (self.tls_cert and self.tls_key), self.bind_host
            where = f"serving plain ws on {host}"
        else:
            plain, host = not self.tls_ca, self.agg_ip
            where = f"plain ws to the aggregator at {host}"
        if not plain or _loopback(host):
            return
        if not self.params.allow_plain_ws:
            raise ContextError(f"{where} (not a loopback address) needs allow_plain_ws: \"true\" in the job, or a "
                               "TLS Secret (spec.transmitter.ws.credentialName): over plain ws " + PLAIN_WS_RISK)
        if where not in _warned_plain:
            _warned_plain.add(where)
            log.warning("%s (allow_plain_ws): %s", where, PLAIN_WS_RISK)

    def aggregator_url(self) -> str:
        """Where trainers reach the aggregator: wss when a CA to verify it is configured."""
        scheme = "wss" if self.tls_ca else "ws"
        return f"{scheme}://{self.agg_ip}:{self.agg_port}"

    @classmethod
    def from_env(cls, role: str, env: Mapping[str, str] | None = None) -> "WorkerContext":
        env = dict(os.environ if env is None else env)
        job = env.get("JOB_NAME", "")
        if not job:
            raise ContextError("JOB_NAME is not set: start workers with `fedmist run` or set the env contract")
        worker = env.get("WORKER_NAME") or ("aggregator" if role == "aggregator" else "trainer")
        params = parse_params(env, where="<env>", role=role)
        state_default = Path("fedmist-state") / job / worker
        ctx = cls(
            role=role,
            job=job,
            namespace=env.get("NAMESPACE", "default"),
            worker=worker,
            participants=_int(env, "PARTICIPANTS_COUNT", 1),
            transmitter=_choice(env, "TRANSMITTER", ("ws", "s3"), "ws"),
            params=params,
            model_url=env.get("MODEL_URL", ""),
            pretrained_model_url=env.get("PRETRAINED_MODEL_URL", ""),
            agg_bind_port=_int(env, "AGG_BIND_PORT", DEFAULT_AGG_PORT),
            agg_ip=env.get("AGG_IP", "127.0.0.1"),
            agg_port=_int(env, "AGG_PORT", DEFAULT_AGG_PORT),
            dataset_url=env.get("TRAIN_DATASET_URL", ""),
            dataset_name=env.get("DATASET_NAME", ""),
            dataset_format=env.get("DATASET_FORMAT", "idx"),
            token=env.get("FEDMIST_TOKEN", ""),
            bind_host=env.get("FEDMIST_BIND_HOST", "0.0.0.0"),
            status_file=Path(env["FEDMIST_STATUS_FILE"]) if env.get("FEDMIST_STATUS_FILE") else None,
            state_dir=Path(env.get("FEDMIST_STATE_DIR") or state_default),
            threads=_int(env, "FEDMIST_THREADS", os.cpu_count() or 1),
            tls_cert=env.get("FEDMIST_TLS_CERT", ""),
            tls_key=env.get("FEDMIST_TLS_KEY", ""),
            tls_ca=env.get("FEDMIST_TLS_CA", ""),
            agg_data_path=env.get("AGG_DATA_PATH", ""),
            s3_endpoint_url=env.get("S3_ENDPOINT_URL", ""),
            access_key_id=env.get("ACCESS_KEY_ID", ""),
            secret_access_key=env.get("SECRET_ACCESS_KEY", ""),
        )
        return replace(ctx, params=with_defaults(params, _task(ctx), ctx.participants))


def _task(ctx: WorkerContext) -> str:
    """The model's task, which picks a runtime's defaults: read from what the worker holds when the job names no
    model (worker/detect/kind.py), for MistNet and the FedAvg family alike."""
    from fedmist.worker.detect.kind import is_detection  # detect_kind imports this module

    return "detect" if is_detection(ctx) else "classify"


def _loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (an unresolved name other than localhost counts as remote)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ContextError(f"{name} must be an integer (got {raw!r})") from None
    if value < 0:
        raise ContextError(f"{name} must not be negative (got {raw!r})")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = env.get(name, "") or default
    if value not in allowed:
        raise ContextError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")
    return value
