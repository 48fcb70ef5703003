"""A process kubelet for the test cluster: runs the Pods bound to its node names as local processes.

It watches Pods (``spec.nodeName`` one of its nodes), starts each container as ``python -m ...`` with the
Pod's env (``secretKeyRef``, ``fieldRef`` resolved) and volumes mapped to host folders (``podspec``), runs
native sidecars beside the containers and stops them once the containers exited, gives each pod a loopback IP
of its own and resolves Service names to the pod behind them (``netshim``), reports phase, pod IP, container
states and exit codes through the status subresource, and kills the processes of a deleted Pod by process
group, then finishes the deletion, as a kubelet does. Only ``restartPolicy: Never`` pods (what the operator
creates); regular init containers, probes and resource limits are not run. It registers its Nodes and keeps
them Ready, so it also serves a real kube-apiserver (``python -m fedmist.testing.kubelet --help``).
"""

from fedmist.testing.kubelet.client import ApiClient
from fedmist.testing.kubelet.kubelet import Kubelet
from fedmist.testing.kubelet.podspec import NodeConfig

__all__ = ["ApiClient", "Kubelet", "NodeConfig"]
