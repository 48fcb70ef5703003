"""The user-set half of the env contract (DESIGN section 4): parsing and validating job parameters.

Why a registry of small parsers: each parameter has its own rule and its own one-line message
(``epsilon: must be a positive number or 'inf' (got 'abc')``), and new parameters are one line each, with no
string-dispatch chain. Names are case-insensitive (``EPSILON`` is ``epsilon``) — a known Sedna slip —
and an unset epsilon under MistNet is an error, never silently "no privacy".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Final

from pydantic import BaseModel, ConfigDict

from fedmist.imports import is_import_path
from fedmist.spec.errors import ParamError

DEFAULT_AGG_PORT: Final = 7363
ROLES: Final = ("aggregator", "trainer")
# Injected by the launcher (Sedna's names, plus DATASET_FORMAT); never part of ``JobParams.extra``.
INJECTED_ENV_NAMES: Final = (
    "JOB_NAME", "NAMESPACE", "WORKER_NAME", "PARTICIPANTS_COUNT", "TRANSMITTER", "AGG_DATA_PATH",
    "S3_ENDPOINT_URL", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "MODEL_URL", "PRETRAINED_MODEL_URL",
    "AGG_BIND_PORT", "AGG_IP", "AGG_PORT", "TRAIN_DATASET_URL", "DATASET_NAME", "MODEL_NAME",
    "DATASET_FORMAT",
)
KNOWN_ALGORITHMS: Final = ("mistnet", "fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedmedian",
                           "trimmedmean", "krum", "multikrum")
BUILTIN_TRAINERS: Final = ("sgd",)  # fedmist.training.TRAINERS, named here without importing torch
#: What the job's model does; decides the MistNet runtime and its defaults (worker/detect_kind.py tells which).
TASKS: Final = ("classify", "detect")
DEFAULT_MODEL: Final = "lenet5"
DEFAULT_NUM_CLASSES: Final = 10
#: One default cut per kind of model: LeNet-5 after its first conv block, YOLOv5 after module 3 (the seed's job).
#: "No cut" has one representation, ``None`` (FedAvg-family jobs, and pretraining without the bit channel).
DEFAULT_CUT_LAYER: Final = {"classify": 3, "detect": 4}
#: A FedAvg-family trainer's round settings when neither its own env nor the round's config sets them (issue 3's
#: benchmark). Not filled into the trainer's params: the aggregator's round config must be able to win.
LOCAL_TRAINING_DEFAULTS: Final = {"epochs": 1, "batch_size": 32, "learning_rate": 0.01}
MISTNET_NEEDS_EPSILON: Final = ("required for aggregation_algorithm=mistnet; "
                                "use epsilon: inf to disable noise explicitly")

_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][\w.\-]*$")
_LAYER_NAME = re.compile(r"^[A-Za-z_][\w.\-]*$")
_INFINITY = frozenset({"inf", "+inf", "infinity", "+infinity"})
_BOOLS: Final = {"true": True, "1": True, "yes": True, "on": True,
                 "false": False, "0": False, "no": False, "off": False}

Parser = Callable[[str], object]


def _integer(minimum: int) -> Parser:
    def parse(raw: str) -> int:
        if not _INTEGER.match(raw) or int(raw) < minimum:
            raise ValueError(f"must be an integer >= {minimum}")
        return int(raw)
    return parse


def _number(accept: Callable[[float], bool], requirement: str) -> Parser:
    def parse(raw: str) -> float:
        if not _NUMBER.match(raw) or not accept(float(raw)):
            raise ValueError(f"must be {requirement}")
        return float(raw)
    return parse


_positive = _number(lambda x: x > 0, "a positive number")
_non_negative = _number(lambda x: x >= 0, "a number >= 0")
_unit_open = _number(lambda x: 0 <= x < 1, "a number in [0, 1)")


#: The one rule for every epsilon a job accepts (job parameters, the wire, ``fedmist audit --epsilons``). Why 0 is
#: refused although the channel (privacy/channel.py) computes it: at 0 every bit is a coin flip, a job that learns
#: nothing; "no noise" is the explicit ``inf``.
EPSILON_RULE: Final = "must be a positive number or 'inf'"


def parse_epsilon(text: str) -> float:
    """An epsilon in its text form (a job parameter or the wire's field) -> float, ``inf`` allowed.

    Raises ``ValueError(EPSILON_RULE)``; callers add where the text came from (a parameter, a message field).
    """
    raw = text.strip()
    if raw.lower() in _INFINITY:
        return math.inf
    if not _NUMBER.match(raw) or not float(raw) > 0:
        raise ValueError(EPSILON_RULE)
    return float(raw)


def format_epsilon(epsilon: float) -> str:
    """The one text form of an epsilon on the wire and in stores: ``inf`` or Python's shortest float repr."""
    return "inf" if epsilon == math.inf else repr(float(epsilon))


_epsilon = parse_epsilon


def _import_path(raw: str) -> bool:
    """``package.module:name`` by fedmist.imports' one grammar; no ``?options`` (those are for loaders only)."""
    return "?" not in raw and is_import_path(raw)


def _boolean(raw: str) -> bool:
    try:
        return _BOOLS[raw.lower()]
    except KeyError:
        raise ValueError("must be true or false") from None


def _algorithm(raw: str) -> str:
    if raw.lower() in KNOWN_ALGORITHMS:
        return raw.lower()
    if _import_path(raw):
        return raw
    raise ValueError(f"must be one of {', '.join(KNOWN_ALGORITHMS)}, or an import path 'package.module:Name'")


def _model(raw: str) -> str:
    if _MODEL_NAME.match(raw) or _import_path(raw):
        return raw
    raise ValueError("must be a model name (e.g. lenet5, yolov5s) or an import path 'package.module:factory'")


def _cut_layer(raw: str) -> int | str:
    if _INTEGER.match(raw) and int(raw) >= 1:
        return int(raw)
    if not _INTEGER.match(raw) and _LAYER_NAME.match(raw):
        return raw
    raise ValueError("must be an integer >= 1 or a layer name")


def _trainer(raw: str) -> str:
    if raw.lower() in BUILTIN_TRAINERS or _import_path(raw):
        return raw
    raise ValueError(f"must be {' or '.join(BUILTIN_TRAINERS)}, or an import path 'package.module:Class' "
                     f"(a subclass of fedmist.training.Trainer)")


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def _device(raw: str) -> str:
    if _DEVICE.match(raw.lower()):
        return raw.lower()
    raise ValueError("must be cpu, cuda or cuda:N")


def _text(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


# Canonical (lower-case) parameter name -> parser. TEST_DATASET_URL is read as test_dataset_url.
PARSERS: Final[dict[str, Parser]] = {
    "aggregation_algorithm": _algorithm,
    "cut_layer": _cut_layer,
    "epsilon": _epsilon,
    "label_epsilon": _epsilon,
    "batch_size": _integer(1),
    "epochs": _integer(1),
    "learning_rate": _positive,
    "exit_round": _integer(1),
    "participants_count": _integer(1),
    "min_clients": _integer(1),
    "round_timeout": _positive,
    "test_dataset_url": _text,
    "model": _model,
    "trainer": _trainer,
    "num_classes": _integer(2),
    "imgsz": _integer(1),
    "fraction_fit": _number(lambda x: 0 < x <= 1, "a number in (0, 1]"),
    "min_fit_clients": _integer(1),
    "min_available_clients": _integer(1),
    "mu": _non_negative,
    "server_learning_rate": _positive,
    "beta_1": _unit_open,
    "beta_2": _unit_open,
    "tau": _positive,
    "beta": _number(lambda x: 0 <= x < 0.5, "a number in [0, 0.5)"),
    "num_malicious": _integer(0),
    "m": _integer(1),
    "max_samples": _integer(1),
    "target_accuracy": _number(lambda x: 0 <= x <= 1, "a number in [0, 1]"),
    "validation_split": _unit_open,
    "debias": _boolean,
    "seed": _integer(0),
    "keep_payloads": _boolean,
    "allow_plain_ws": _boolean,
    "device": _device,
}


class JobParams(BaseModel):
    """Validated user parameters of one worker. ``None`` means "not set: the component's default"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str = "aggregator"
    aggregation_algorithm: str = "fedavg"
    cut_layer: int | str | None = None
    epsilon: float | None = None
    label_epsilon: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    learning_rate: float | None = None
    exit_round: int | None = None
    participants_count: int | None = None
    min_clients: int | None = None
    round_timeout: float | None = None
    test_dataset_url: str | None = None
    model: str | None = None
    trainer: str | None = None
    num_classes: int | None = None
    imgsz: int | None = None
    fraction_fit: float | None = None
    min_fit_clients: int | None = None  # Flower's names (strategy/sampling.py); unset: min_clients
    min_available_clients: int | None = None
    mu: float | None = None
    server_learning_rate: float | None = None
    beta_1: float | None = None
    beta_2: float | None = None
    tau: float | None = None
    beta: float | None = None
    num_malicious: int | None = None
    m: int | None = None
    max_samples: int | None = None  # FedAvg family: the most samples one update may claim (worker/update_bounds)
    target_accuracy: float | None = None
    validation_split: float | None = None
    debias: bool | None = None
    seed: int | None = None
    keep_payloads: bool = False
    # plain ws to a non-loopback address: an explicit choice (frames stay authenticated, not confidential)
    allow_plain_ws: bool = False
    device: str | None = None  # where torch work runs (YOLO jobs): cpu, cuda, cuda:N (models/device.py checks it)
    extra: dict[str, str] = {}


# Names in a worker's environment that describe the process or its host, not the job: they differ between two
# pods (or two local runs) of the same job, so nothing that identifies the job (a checkpoint's digest) may
# depend on them. FEDMIST_* are the launcher's and operator's plumbing (state, report and TLS paths, tokens).
PROCESS_ENV_PREFIXES: Final = ("FEDMIST_", "KUBERNETES_", "LC_", "PYTHON", "XDG_", "OMP_", "MKL_", "SSL_")
PROCESS_ENV_NAMES: Final = frozenset({"HOSTNAME", "HOME", "PATH", "PWD", "OLDPWD", "SHLVL", "TERM", "LANG",
                                      "LANGUAGE", "USER", "LOGNAME", "SHELL", "TZ", "TMPDIR", "_", "VIRTUAL_ENV",
                                      "YOLO_CONFIG_DIR", "CI"})


def job_extra(extra: Mapping[str, str]) -> dict[str, str]:
    """The part of :attr:`JobParams.extra` that is the job's own (a user trainer's or strategy's settings):
    ``extra`` less the process environment (``PROCESS_ENV_PREFIXES``/``PROCESS_ENV_NAMES``)."""
    return {key: value for key, value in extra.items()
            if key.upper() not in PROCESS_ENV_NAMES and not key.upper().startswith(PROCESS_ENV_PREFIXES)}


def parse_params(env: Mapping[str, str], where: str = "<env>", role: str = "aggregator") -> JobParams:
    """Validate the user parameters found in ``env`` (a process environment or a template's env).

    ``where`` names the source in errors (``<env>`` or a file). Keys that are neither parameters nor injected
    contract names are kept, as given, in ``extra``. Raises ``ParamError``.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    given: dict[str, tuple[str, str]] = {}
    extra: dict[str, str] = {}
    injected = frozenset(INJECTED_ENV_NAMES)
    for key, value in env.items():
        canonical = key.lower()
        if canonical not in PARSERS:
            if key.upper() not in injected:
                extra[key] = value
            continue
        if canonical in given and given[canonical][1].strip() != value.strip():
            first_key, first_value = given[canonical]
            raise ParamError(where, None, None, canonical,
                             f"given twice with different values, as {first_key!r} and {key!r}",
                             {first_key: first_value, key: value})
        given.setdefault(canonical, (key, value))
    values: dict[str, object] = {}
    for canonical, (key, raw) in given.items():
        try:
            values[canonical] = PARSERS[canonical](raw.strip())
        except ValueError as exc:
            raise ParamError(where, None, None, key, str(exc), raw) from None
    if values.get("aggregation_algorithm") == "mistnet" and "epsilon" not in values:
        raise ParamError(where, None, None, "epsilon", MISTNET_NEEDS_EPSILON)
    return JobParams(role=role, extra=extra, **values)


# (runtime family, role, task) -> the defaults of the parameters that runtime reads. Why one table: each default is
# written once, here, and the runtimes read plain values (no ``or 32`` scattered over worker/). Parameters a
# runtime reads as "unset" on purpose stay None: a MistNet edge's epochs/learning_rate (it notes them as
# ignored), a FedAvg trainer's epochs/batch_size/learning_rate/trainer (the round's config wins over a default).
_CLASSIFY_CLOUD: Final[dict[str, object]] = {
    "model": DEFAULT_MODEL, "num_classes": DEFAULT_NUM_CLASSES, "cut_layer": DEFAULT_CUT_LAYER["classify"],
    "batch_size": 64, "epochs": 10, "learning_rate": 0.05, "round_timeout": 1800.0, "debias": True, "seed": 0}
_DETECT_CLOUD: Final[dict[str, object]] = {
    "cut_layer": DEFAULT_CUT_LAYER["detect"], "imgsz": 640, "batch_size": 32, "epochs": 10, "learning_rate": 0.001,
    "round_timeout": 1800.0, "debias": True, "seed": 0, "device": "cpu"}
RUNTIME_DEFAULTS: Final[dict[tuple[str, str, str], dict[str, object]]] = {
    ("mistnet", "aggregator", "classify"): _CLASSIFY_CLOUD,
    ("mistnet", "aggregator", "detect"): _DETECT_CLOUD,
    ("mistnet", "trainer", "classify"): {"round_timeout": 120.0},
    ("mistnet", "trainer", "detect"): {"imgsz": 640, "round_timeout": 120.0},
    ("rounds", "aggregator", "classify"): {"model": DEFAULT_MODEL, "num_classes": DEFAULT_NUM_CLASSES, "exit_round": 10,
                                           "round_timeout": 600.0, "min_clients": 1, "seed": 0},
    ("rounds", "trainer", "classify"): {"model": DEFAULT_MODEL, "round_timeout": 600.0, "validation_split": 0.0,
                                        "seed": 0},
    # YOLO under the FedAvg family (worker/rounds/detect_*.py): the round config carries the aggregator's imgsz,
    # epochs, batch_size and AdamW learning rate; num_classes comes from the job or the test set's data yaml
    ("rounds", "aggregator", "detect"): {"imgsz": 640, "epochs": 1, "batch_size": 16, "learning_rate": 0.001,
                                         "exit_round": 10, "round_timeout": 1800.0, "min_clients": 1, "seed": 0,
                                         "device": "cpu"},
    ("rounds", "trainer", "detect"): {"round_timeout": 1800.0, "seed": 0, "device": "cpu"},
}


def runtime_family(algorithm: str) -> str:
    """MistNet has its own runtime; every other algorithm is a strategy of the round engine."""
    return "mistnet" if algorithm.strip().lower() == "mistnet" else "rounds"


def with_defaults(params: JobParams, task: str = "classify", participants: int = 1) -> JobParams:
    """``params`` with every unset parameter its runtime reads filled from ``RUNTIME_DEFAULTS``: what a worker's
    runtime receives (worker/context.py), so no runtime carries a default of its own. ``task`` is the model's
    (``TASKS``); ``participants`` is a MistNet cloud's ``min_clients``
    default (it waits for every edge unless told otherwise). Values the job set are kept as given."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    family = runtime_family(params.aggregation_algorithm)
    defaults = dict(RUNTIME_DEFAULTS[(family, params.role, task)])
    if family == "mistnet" and params.role == "aggregator":
        defaults["min_clients"] = participants
    unset = {name: value for name, value in defaults.items() if getattr(params, name) is None}
    return params.model_copy(update=unset) if unset else params
