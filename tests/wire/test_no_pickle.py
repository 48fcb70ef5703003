"""No module may unpickle wire or file data: no pickle/dill/marshal loads, and torch.load only with weights_only."""

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "fedmist"
FORBIDDEN = re.compile(r"^\s*(import (pickle|cPickle|dill|cloudpickle|marshal)|from (pickle|dill|cloudpickle|marshal) )"
                       r"|(pickle|dill|cloudpickle|marshal)\.loads?\(|numpy\.load\(.*allow_pickle=True|np\.load\(.*allow_pickle=True",
                       re.MULTILINE)


def test_no_module_unpickles_anything():
    offenders = [f"{p.relative_to(SRC)}: {m.group(0).strip()}" for p in SRC.rglob("*.py")
                 for m in FORBIDDEN.finditer(p.read_text())]
    assert offenders == []


def test_every_torch_load_is_weights_only():
    calls = [(p, line) for p in SRC.rglob("*.py") for line in p.read_text().splitlines() if "torch.load(" in line]
    assert calls, "the weights loader should be found by this test"
    assert all("weights_only=True" in line for _, line in calls), calls
