"""Check a job's user code before any worker starts: every import path resolves to what it must be.

Why up front: a typo in ``model: mypkg.nets:bild`` would otherwise surface as a worker exiting 2 seconds or
minutes later (after data loading and connection set-up), on one edge of many. Here it is one line naming
the manifest file, the document and the field, exit code 2, and no process started.

What is checked (only for settings that are import paths, so built-in jobs never pay a torch import here):
the model factory imports, builds an ``nn.Module`` and -- for MistNet -- can be cut at ``cut_layer``; the
strategy class is a concrete ``fedmist.strategy.Strategy``; the trainer class a concrete
``fedmist.training.Trainer``; each ``format: python`` loader and an import-path ``TEST_DATASET_URL`` name a
callable. Loaders are not called (that would read the data twice); what they return is checked by the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from fedmist.imports import import_callable, is_import_path, search_path
from fedmist.spec.errors import ManifestError
from fedmist.spec.job import CONTAINER_ENV, JOB_KIND, ResolvedJob, WorkerSpec
from fedmist.spec.manifests import PYTHON_FORMAT
from fedmist.spec.params import DEFAULT_CUT_LAYER


def check_job(job: ResolvedJob, folders: Iterable[str | Path] = ()) -> None:
    """Raise :class:`~fedmist.spec.errors.ManifestError` (one line) for the first import path that does not
    resolve; ``folders`` are searched first (the job file's folder is always searched)."""
    with search_path([*folders, job.job_file.parent]):
        for worker in job.workers:
            _check_worker(job, worker)


def _check_worker(job: ResolvedJob, worker: WorkerSpec) -> None:
    params = job.params_for(worker)
    keys = {key.lower(): key for key in worker.env}

    def field(name: str) -> str:
        return f"{worker.field_path}.{CONTAINER_ENV}.{keys.get(name, name)}"

    def check(name: str, value: str | None, probe: Callable[[str], object]) -> None:
        if value and is_import_path(value):
            try:
                probe(value)
            except ValueError as exc:
                raise ManifestError(job.job_file, JOB_KIND, job.name, field(name), str(exc)) from None

    mistnet = (params.aggregation_algorithm or "").lower() == "mistnet"
    cut = params.cut_layer if params.cut_layer is not None else DEFAULT_CUT_LAYER["classify"]  # import-path models
    if worker.role == "aggregator" or "model" in keys:
        check("model", params.model, lambda path: _check_model(path, cut if mistnet else None))
    check("aggregation_algorithm", params.aggregation_algorithm, _check_strategy)
    check("trainer", params.trainer, _check_trainer)
    check("test_dataset_url", params.test_dataset_url, lambda path: import_callable(path.split("?")[0],
                                                                                      "dataset loader"))
    if worker.dataset_format == PYTHON_FORMAT and worker.dataset_url:
        try:
            import_callable(worker.dataset_url.split("?")[0], "dataset loader")
        except ValueError as exc:
            raise ManifestError(job.job_file, "Dataset", worker.dataset_name, "spec.url", str(exc)) from None


def _check_model(path: str, cut_layer: int | str | None) -> None:
    from fedmist.models.parts import build_job_model, split_parts  # torch: only for import-path models

    model = build_job_model(path)
    if cut_layer is not None:
        split_parts(model, cut_layer, f"model {path!r}")


def _check_strategy(path: str) -> None:
    from fedmist.strategy.registry import resolve_strategy

    resolve_strategy(path)


def _check_trainer(path: str) -> None:
    from fedmist.training import resolve_trainer

    resolve_trainer(path)


def import_paths(job: ResolvedJob) -> list[str]:
    """Every import path the job names (model, strategy, trainer, loaders), as written."""
    found: list[str] = []
    for worker in job.workers:
        params = job.params_for(worker)
        for value in (params.model, params.aggregation_algorithm, params.trainer, params.test_dataset_url):
            if value and is_import_path(value):
                found.append(value)
        if worker.dataset_format == PYTHON_FORMAT and worker.dataset_url:
            found.append(worker.dataset_url)
    return found


def user_code_folders(job: ResolvedJob, candidates: Iterable[str | Path]) -> list[str]:
    """The ``candidates`` folders that hold the top-level package or module of one of the job's import paths.

    Only those go on the workers' ``PYTHONPATH``: a folder put there shadows even the standard library, so
    the job file's folder is added only when the user's code actually lives in it."""
    tops = {path.split(":", 1)[0].split(".", 1)[0] for path in import_paths(job)}
    folders = []
    for candidate in candidates:
        folder = Path(candidate).resolve()
        if any((folder / top).is_dir() or (folder / f"{top}.py").is_file() for top in tops):
            folders.append(str(folder))
    return folders

