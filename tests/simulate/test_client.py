"""A simulated client resolves its round exactly as the real trainer with its env does (one seam: the params)."""

from __future__ import annotations

import numpy as np

from fedmist.models.local_round import local_config, local_rows
from fedmist.simulate.client import ClientRunner, RunnerSpec
from fedmist.wire import messages as msg
from fedmist.worker.context import WorkerContext
from fedmist.worker.rounds.trainer import RoundsTrainer

EDGE2 = {"batch_size": "16", "seed": "3", "validation_split": "0.25", "mu": "0.2"}


def test_a_named_client_gets_its_trainers_config_and_rows_a_virtual_one_the_template():
    spec = RunnerSpec(model="lenet5", num_classes=10, datasets=[], client_env={"epochs": "2"},
                      named_env={"edge1": {}, "edge2": EDGE2})
    runner = ClientRunner(spec, (np.zeros((8, 28, 28), np.uint8), np.zeros(8, np.int64)))
    real = RoundsTrainer(WorkerContext.from_env("trainer", {"JOB_NAME": "j", "WORKER_NAME": "edge2", **EDGE2}),
                         data=None, reporter=None)  # type: ignore[arg-type]
    for config in ({}, {"epochs": 3, "learning_rate": 0.05}, {"mu": 0.7}):
        simulated = local_config(runner.client("edge2")[0], config, "edge2", 2, 4)
        assert simulated == real.local_config(msg.FitMeta(config=config, rounds=4), 2)
    assert np.array_equal(local_rows(40, runner.client("edge2")[0])[1],
                          local_rows(40, real.ctx.params)[1])  # the same rows held out as LocalData's
    assert local_config(runner.client("client7")[0], {}, "client7", 1, 1).epochs == 2  # the template's env
    assert runner.client("client7") is runner.client("client8")  # virtual clients share one params + Trainer
