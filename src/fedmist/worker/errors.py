"""The one exception a worker raises when its job cannot go on."""


class JobFailure(Exception):
    """The job cannot go on; the message is the one-line reason recorded in status and the log."""
