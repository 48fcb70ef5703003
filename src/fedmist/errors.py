"""The two ways a job can end badly, shared by every layer that runs part of a job (worker runtimes, the edge's
own privacy decisions in :mod:`fedmist.privacy.edge`). They live at the bottom, importing nothing, so a lower
layer can raise them without importing the worker runtime."""


class JobFailure(Exception):
    """The job cannot go on; the message is the one-line reason recorded in status and the log."""


class ConfigurationError(JobFailure):
    """The job is misconfigured (a missing dataset, model file or url, a missing epsilon): restarting the
    worker cannot help, so the worker exits with code 2 and launchers do not retry it."""
