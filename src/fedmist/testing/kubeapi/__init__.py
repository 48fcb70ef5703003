"""An emulated Kubernetes API server for the suite (``KubeApiServer``): real HTTP on 127.0.0.1, the REST
API the operator, kopf and the process kubelet use, faithful where they depend on it (see ``store``).

Why not a real kube-apiserver: no registry CI can reach ships one (nor k3s, kwok or a Docker engine); and
``kmock`` (kopf's author's emulator) keeps no uid, resourceVersion, selectors, status subresource, schema,
garbage collector or RBAC, which are exactly what the operator depends on.
"""

from fedmist.testing.kubeapi.errors import ApiError
from fedmist.testing.kubeapi.rbac import User
from fedmist.testing.kubeapi.server import KubeApiServer

__all__ = ["ApiError", "KubeApiServer", "User"]
