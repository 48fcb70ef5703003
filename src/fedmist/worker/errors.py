"""The exceptions a worker raises when its job cannot go on."""


class JobFailure(Exception):
    """The job cannot go on; the message is the one-line reason recorded in status and the log."""


class ConfigurationError(JobFailure):
    """The job is misconfigured (a missing dataset, model file or url): restarting the worker cannot help,
    so the worker exits with code 2 and launchers do not retry it."""
