"""Build and run fedmist jobs from Python, without YAML: :class:`Job`, :class:`Edge`, :class:`RunResult`.

A :class:`Job` is the same object whether it was built in Python or loaded from Sedna manifests
(:meth:`Job.from_manifests`); ``fedmist run -f job.yaml`` is a thin layer over ``Job.from_manifests(...).run()``.
Built in Python, the job is turned into the very manifests a YAML user would write (see :meth:`Job.to_yaml`)
and validated by the same code, so both ways accept and refuse exactly the same jobs.

Your own code goes in by import path (``"package.module:name"``) or as the function/class itself -- a model
factory, a dataset loader, a :class:`fedmist.training.Trainer` subclass, a
:class:`fedmist.strategy.Strategy` subclass. Worker processes import it again, so it must live in an
importable module (not in ``__main__``, not a lambda); the folder it was imported from is put on the
workers' ``PYTHONPATH``.

This module imports neither torch nor the worker runtimes: building and validating a job is instant, and
only :meth:`Job.run` (which starts processes) or :func:`pretrain` load the heavy parts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedmist.api_build import (
    Value,
    format_of,
    sedna_doc,
    suffix_of,
    unwrap_partial,
    with_query,
    worker_template,
)
from fedmist.imports import is_import_path, module_root, path_of
from fedmist.spec.job import ResolvedJob, resolve_job
from fedmist.spec.load import bundle_from_documents, load_manifests
from fedmist.spec.manifests import PYTHON_FORMAT

if TYPE_CHECKING:  # only for the annotation: the launcher is imported when a job runs
    from fedmist.launch.netlab.hosts import Netlab
    from fedmist.launch.spawn import Zygote

__all__ = ["Edge", "Job", "RunResult", "load_job", "parse_path_map", "pretrain"]

DEFAULT_TIMEOUT_S = 24 * 3600.0


@dataclass(frozen=True)
class Edge:
    """One training worker (an edge) and its local data.

    ``data`` is a built-in dataset path (an IDX folder, a Sedna ``index.txt`` or ``.csv``), a loader import
    path ``"package.module:loader"``, or the loader function itself; a loader is called as
    ``loader(split, **options)`` and returns a torch ``Dataset`` of ``(input tensor, int label)``.
    ``format`` is inferred from ``data`` when not given (``python`` for loaders; ``txt``/``csv`` by suffix;
    ``idx`` otherwise). ``name`` is the node name (default ``edge1``, ``edge2``, ... by position); ``env``
    adds settings to this worker's env only (e.g. ``{"epochs": 2}`` or your trainer's own options).
    """

    data: str | Path | Callable[..., Any]
    name: str | None = None
    format: str | None = None
    split: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, Value] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """How a run ended: ``exit_code`` (0 succeeded, 1 failed, 2 misconfigured -- as ``fedmist run``),
    ``phase`` (``Succeeded``/``Failed``), the trained model's path (``None`` unless it was saved), the work
    folder and the final ``status.json`` content (metrics, history, per-worker figures, conditions)."""

    exit_code: int
    phase: str
    model_path: Path | None
    workdir: Path
    status: dict[str, Any]

    @property
    def succeeded(self) -> bool:
        """True when the job succeeded and saved its model."""
        return self.phase == "Succeeded" and self.exit_code == 0

    @property
    def metrics(self) -> dict[str, Any]:
        """The job's metrics (``accuracy``, ``loss``, ``history``, privacy figures for MistNet...)."""
        return dict(self.status.get("metrics") or {})

    @property
    def accuracy(self) -> float | None:
        """The final test accuracy, or ``None`` without a test set."""
        value = self.metrics.get("accuracy")
        return None if value is None else float(value)

    @property
    def reason(self) -> str:
        """The last condition's message: why the job ended as it did."""
        conditions = self.status.get("conditions") or []
        return str(conditions[-1].get("message", "")) if conditions else ""


class Job:
    """A federated job: an aggregator (the cloud) and one training worker per :class:`Edge`.

    Keyword arguments map onto the env contract (DESIGN section 4): ``algorithm`` is
    ``aggregation_algorithm`` (``"mistnet"``, ``"fedavg"``, ..., an import path or a Strategy subclass);
    ``model`` a built-in name, an import path or a factory function; ``trainer`` a Trainer subclass or its
    import path (FedAvg family); ``rounds`` is ``exit_round``; ``test_data`` is ``TEST_DATASET_URL`` (a path,
    a loader import path or a loader function; loaders get split ``"test"``). ``epochs``, ``batch_size`` and
    ``learning_rate`` are the cloud's training settings under MistNet and the edges' round defaults under
    FedAvg. ``params`` adds any other env setting to the aggregator (``min_clients``, ``seed``,
    ``round_timeout``...), ``edge_params`` to every edge. ``model_url`` is where the trained model is written
    (default ``runs/<name>/model.pth``); ``pretrained`` the weights to start from (required by MistNet).
    Relative paths are taken from ``base_dir`` (default: the current folder). Raises
    :class:`fedmist.spec.errors.ManifestError` (a ``ValueError``-like one-line error) for invalid settings.
    """

    def __init__(self, name: str, *, edges: Sequence[Edge | str | Path], model: str | Callable[..., Any] = "lenet5",
                 algorithm: str | type = "fedavg", model_url: str | Path | None = None,
                 pretrained: str | Path | None = None, test_data: str | Path | Callable[..., Any] | None = None,
                 cut_layer: int | str | None = None, epsilon: float | None = None, trainer: str | type | None = None,
                 rounds: int | None = None, epochs: int | None = None, batch_size: int | None = None,
                 learning_rate: float | None = None, params: Mapping[str, Value] | None = None,
                 edge_params: Mapping[str, Value] | None = None, base_dir: str | Path | None = None) -> None:
        self._python_path: list[str] = []
        agg_env: dict[str, Value | None] = {
            "aggregation_algorithm": self._import_name(algorithm, "aggregation_algorithm"),
            "model": self._import_name(model, "model"),
            "cut_layer": cut_layer, "epsilon": epsilon, "exit_round": rounds, "epochs": epochs,
            "batch_size": batch_size, "learning_rate": learning_rate,
            "trainer": self._import_name(trainer, "trainer") if trainer is not None else None,
            "TEST_DATASET_URL": self._data_url(test_data, None, "test_data") if test_data is not None else None,
            **(params or {}),
        }
        # Each worker reads its own env (as in Sedna): the edges must know the algorithm (MistNet edges extract
        # and upload instead of training rounds) and, for MistNet, epsilon; the trainer class is theirs too.
        shared = {"aggregation_algorithm": agg_env["aggregation_algorithm"], "epsilon": epsilon,
                  "trainer": agg_env["trainer"], **(edge_params or {})}
        base = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
        documents = self._documents(name, [e if isinstance(e, Edge) else Edge(data=e) for e in edges], agg_env,
                                    shared, model_url if model_url is not None else Path("runs") / name / "model.pth",
                                    pretrained)
        self._documents_built = documents
        self._init(resolve_job(bundle_from_documents(documents, base / f"fedmist.Job({name})")), [],
                   self._python_path)

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_manifests(cls, paths: Iterable[str | Path] | str | Path, *, path_map: Mapping[str, str] | None = None,
                       job: str | None = None) -> "Job":
        """Load Sedna manifests (files as for ``fedmist run -f``) into a job. ``path_map`` re-roots host paths
        (``{"/data": "./data"}``); ``job`` picks one FederatedLearningJob when the files define several.
        Warnings about ignored fields are in :attr:`warnings`. Raises ``ManifestError`` (one line)."""
        files = [paths] if isinstance(paths, (str, Path)) else list(paths)
        bundle = load_manifests([Path(p) for p in files], dict(path_map or {}))
        self = cls.__new__(cls)
        self._documents_built = None
        resolved = resolve_job(bundle, job)
        from fedmist.preflight import user_code_folders

        self._init(resolved, [str(w) for w in bundle.warnings], user_code_folders(resolved, [resolved.job_file.parent]))
        return self

    def _init(self, resolved: ResolvedJob, warnings: list[str], python_path: list[str]) -> None:
        self._resolved = resolved
        self._warnings = [*warnings, *resolved.warnings]
        self._python_path = list(dict.fromkeys(python_path))

    def _import_name(self, value: str | Callable[..., Any] | type, what: str) -> str:
        """A user object as the import path workers will use; its package folder joins their PYTHONPATH."""
        if isinstance(value, str):
            return value
        path = path_of(value, what)
        root = module_root(value)
        if root and root not in self._python_path:
            self._python_path.append(root)
        return path

    def _data_url(self, data: str | Path | Callable[..., Any], split: str | None, what: str,
                  options: Mapping[str, str] | None = None) -> str:
        if isinstance(data, Path) or (isinstance(data, str) and not is_import_path(data)):
            return str(data)
        loader, bound = unwrap_partial(data, what)
        return with_query(self._import_name(loader, what), {**({"split": split} if split else {}), **bound,
                                                             **(options or {})})

    def _documents(self, name: str, edges: list[Edge], agg_env: Mapping[str, Value | None],
                   shared: Mapping[str, Value | None], model_url: str | Path,
                   pretrained: str | Path | None) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        workers = []
        for index, edge in enumerate(edges, start=1):
            node = edge.name or f"edge{index}"
            url = self._data_url(edge.data, edge.split, f"edges[{index - 1}].data", edge.options)
            fmt = edge.format or format_of(edge.data, url)
            docs.append(sedna_doc("Dataset", f"{node}-data", {"url": url, "format": fmt, "nodeName": node}))
            workers.append({"dataset": {"name": f"{node}-data"},
                            "template": worker_template(node, {**shared, **edge.env})})
        docs.append(sedna_doc("Model", f"{name}-model", {"url": str(model_url), "format": suffix_of(model_url)}))
        spec: dict[str, Any] = {
            "aggregationWorker": {"model": {"name": f"{name}-model"}, "template": worker_template("cloud", agg_env)},
            "trainingWorkers": workers,
        }
        if pretrained is not None:
            docs.append(sedna_doc("Model", f"{name}-pretrained", {"url": str(pretrained), "format": suffix_of(pretrained)}))
            spec["pretrainedModel"] = {"name": f"{name}-pretrained"}
        docs.append(sedna_doc("FederatedLearningJob", name, spec))
        return docs

    # -- what the job is ---------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The job's name (``metadata.name``)."""
        return self._resolved.name

    @property
    def resolved(self) -> ResolvedJob:
        """The validated job with every reference resolved (what the launcher runs)."""
        return self._resolved

    @property
    def algorithm(self) -> str:
        """``aggregation_algorithm`` as the aggregator will read it."""
        return self._resolved.params_for(self._resolved.aggregator).aggregation_algorithm

    @property
    def warnings(self) -> list[str]:
        """Ignored fields and similar notes from loading manifests (one line each)."""
        return list(self._warnings)

    @property
    def python_path(self) -> tuple[str, ...]:
        """Folders put first on the workers' ``PYTHONPATH`` (and searched by :meth:`check`): where the user
        objects given to the constructor were imported from, or the job file's folder when it holds the
        package an import path names."""
        return tuple(self._python_path)

    @property
    def model_url(self) -> Path:
        """Where the trained model will be written."""
        return Path(self._resolved.model_url)

    def describe(self) -> str:
        """One line: algorithm, workers, transmitter and model path (what ``fedmist validate`` prints)."""
        job = self._resolved
        return (f"job {job.name}: {self.algorithm}, aggregator {job.aggregator.name}, {len(job.trainers)} training "
                f"workers ({', '.join(t.name for t in job.trainers)}), transmitter {job.transmitter}, "
                f"model -> {job.model_url}")

    def manifests(self) -> list[dict[str, Any]]:
        """The Sedna manifests of a job built in Python (``ValueError`` for one loaded from files: read those)."""
        if self._documents_built is None:
            raise ValueError(f"job {self.name} was loaded from {self._resolved.job_file}; its manifests are there")
        return json.loads(json.dumps(self._documents_built))

    def to_yaml(self) -> str:
        """:meth:`manifests` as multi-document YAML, ready for ``fedmist run -f`` or ``kubectl``."""
        import yaml

        return yaml.safe_dump_all(self.manifests(), sort_keys=False)

    # -- doing it ----------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Import every user object the job names and check it is what it must be (a model factory that builds
        a splittable ``nn.Module`` for MistNet, a Strategy or Trainer subclass, a callable loader). Raises
        ``ManifestError`` with one line naming the setting. Imports torch only when an import path is used."""
        from fedmist.preflight import check_job

        check_job(self._resolved, self._python_path)

    def run(self, workdir: str | Path | None = None, *, timeout: float = DEFAULT_TIMEOUT_S, progress: bool = False,
            max_restarts: int = 3, tls: bool = True, check: bool = True, prefork: bool | Zygote = True,
            network: Netlab | None = None) -> RunResult:
        """Run the job on this machine -- the aggregator and one process per edge, as ``fedmist run`` does --
        and wait for it. ``workdir`` (default ``runs/<name>``) receives ``status.json``, logs and state.
        ``progress`` draws the live table on the terminal. Configuration errors found by :meth:`check` raise
        ``ManifestError`` before any process starts; everything after that is in the returned result.
        ``prefork=False`` starts every worker as a fresh interpreter (as a container does) instead of forking
        it from a process that imported torch once (faster start-up; see :mod:`fedmist.launch.zygote`); a
        ``fedmist.launch.spawn.Zygote`` started earlier is used (and closed) by this run. ``network`` (a
        ``fedmist.launch.netlab.hosts.Netlab`` already up) puts each worker on its own host behind its link."""
        from fedmist.launch.local import LocalJob, RunOptions

        if check:
            self.check()
        folder = Path(workdir) if workdir is not None else Path("runs") / self.name
        options = RunOptions(workdir=folder, timeout_s=timeout, progress=progress, tls=tls, max_restarts=max_restarts,
                             python_path=self.python_path, prefork=prefork,
                             network=network)
        code = LocalJob(self._resolved, options).run()
        try:
            status = json.loads((folder / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        phase = str(status.get("phase", "Failed"))
        model = self.model_url if phase == "Succeeded" and self.model_url.exists() else None
        return RunResult(exit_code=code, phase=phase, model_path=model, workdir=folder, status=status)

    def __repr__(self) -> str:
        return f"Job({self.describe()})"


def parse_path_map(items: Iterable[str]) -> dict[str, str]:
    """``["/data=./data", ...]`` (``--path-map`` values) -> ``{"/data": "./data"}``; a malformed item raises
    ``ValueError`` naming it. Parsed here, once, for every command that reads manifests."""
    mapping: dict[str, str] = {}
    for item in items:
        source, sep, target = item.partition("=")
        if not sep or not source or not target:
            raise ValueError(f"--path-map {item!r}: expected SRC=DST, e.g. /data=./data")
        mapping[source] = target
    return mapping


def load_job(files: Iterable[str | Path], *, path_map: Iterable[str] | Mapping[str, str] = (),
             job: str | None = None, warn: Callable[[str], None] | None = None) -> Job:
    """The job in manifest ``files``, checked (:meth:`Job.check`) -- what ``fedmist run``, ``validate`` and
    ``audit`` start from. ``path_map`` is a mapping or ``SRC=DST`` items (:func:`parse_path_map`); each loading
    warning (an ignored field...) goes to ``warn``. Raises ``ManifestError`` or ``ValueError`` (one line)."""
    mapping = dict(path_map) if isinstance(path_map, Mapping) else parse_path_map(path_map)
    loaded = Job.from_manifests(list(files), path_map=mapping, job=job)
    for warning in loaded.warnings:
        if warn is not None:
            warn(warning)
    loaded.check()
    return loaded


def pretrain(model: str | Callable[..., Any], data: str | Path | Callable[..., Any], out: str | Path, *,
             split: str = "train", epochs: int = 5, cut_layer: int | str | None = None,
             channel_epsilon: float = math.inf, batch_size: int = 64, max_lr: float = 0.05, seed: int = 0,
             threads: int | None = None, options: Mapping[str, str] | None = None, format: str | None = None,
             on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> Path:
    """Train ``model`` on public ``data`` and save the weights MistNet starts from (``spec.pretrainedModel``).

    ``data`` is a built-in dataset path or a loader (import path or function; called with ``split`` and
    ``options`` unless its url names them already). ``format`` is inferred from ``data`` when not given, as for
    :class:`Edge`. With ``cut_layer`` the training runs through the simulated bit channel at the cut, so the
    edge layers learn features that survive binarization (and noise at ``channel_epsilon``); see
    :mod:`fedmist.models.pretrain`. ``on_epoch(epoch, stats)`` is called after each epoch (``fedmist pretrain``
    prints them). Returns the written file (``.pth`` or ``.safetensors``).
    """
    from fedmist.data.loaders import load_dataset
    from fedmist.models.pretrain import pretrain as train_public
    from fedmist.models.weights import save_weights

    name = model if isinstance(model, str) else path_of(model, "model")
    bound: dict[str, str] = {}
    if callable(data) and not isinstance(data, (str, Path)):
        loader, bound = unwrap_partial(data, "data")
        data = path_of(loader, "data")
    url = str(data)
    fmt = format or format_of(data, url)
    if fmt == PYTHON_FORMAT:
        given = {part.partition("=")[0] for part in url.partition("?")[2].split("&") if part}
        url = with_query(url, {k: v for k, v in {"split": split, **bound, **(options or {})}.items()
                                if k not in given})
    inputs, labels = load_dataset(url, fmt)
    state = train_public(inputs, labels, model=name, epochs=epochs, batch_size=batch_size, max_lr=max_lr, seed=seed,
                         cut_layer=cut_layer, channel_epsilon=channel_epsilon, threads=threads, on_epoch=on_epoch)
    return save_weights(state, out)
