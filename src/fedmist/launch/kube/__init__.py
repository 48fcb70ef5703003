"""fedmist on Kubernetes/KubeEdge: render a job's Pods/Service/Secret, and reconcile them (the operator).

Layered like the rest of fedmist: ``names``, ``volumes``, ``render``, ``reconcile`` and ``jobstatus`` are pure
(dicts in, dicts out, no Kubernetes client, no kopf), so they are tested offline; ``restapi`` and ``operator``
are the thin adapters to a live cluster, imported only by ``fedmist operator``.
"""
