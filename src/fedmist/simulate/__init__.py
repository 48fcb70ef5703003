"""``fedmist simulate``: N virtual clients over a partition of one dataset, through the same strategy and
aggregation code as a real job, multiplexed over a bounded pool of worker processes (or a Ray cluster).

A virtual client is a name and its row indices (:mod:`~fedmist.simulate.partition`); it holds no process and
no model between its turns. A pool worker (:mod:`~fedmist.simulate.client`) loads the dataset and builds the
model once, then trains whichever client it is handed. Modules: ``partition`` (the splits), ``messages``
(the pool's pickle-free frames), ``client`` (one worker's runner), ``pool`` (local processes), ``ray_pool``
(Ray actors, imported only with ``--ray-address``), ``engine`` (the rounds), ``status`` (status.json).
"""
