"""The exceptions a worker raises when its job cannot go on (defined in :mod:`fedmist.errors`), and the label check."""

from fedmist.errors import ConfigurationError, JobFailure

__all__ = ["ConfigurationError", "JobFailure", "check_labels"]


def check_labels(labels: object, num_classes: int, dataset: str) -> None:
    """Class labels must lie in ``[0, num_classes)``: a user loader with more classes than the job's model
    outputs is a configuration error (set ``num_classes``), not a crash deep inside the loss."""
    import numpy as np

    values = np.asarray(labels)
    if values.size and (int(values.min()) < 0 or int(values.max()) >= num_classes):
        raise ConfigurationError(f"dataset {dataset}: labels range over {int(values.min())}..{int(values.max())}, "
                                 f"but the job's model has {num_classes} classes; set num_classes in the "
                                 f"aggregationWorker's env")
