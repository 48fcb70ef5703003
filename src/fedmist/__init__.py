"""fedmist: federated learning between edge devices and a cloud (MistNet and the FedAvg family)."""

__version__ = "0.1.0"
