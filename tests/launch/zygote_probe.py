"""A model factory for tests/launch/test_launch_zygote.py: a worker that builds it records where and how it runs
(its folder, whether the CLI was ever imported into it), waits ``PROBE_SLEEP`` seconds and exits with
``PROBE_EXIT`` -- a real worker process with a chosen lifetime and exit code, without a whole job around it."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def probe(**_: object) -> None:
    Path("probe.json").write_text(json.dumps({"cwd": os.getcwd(), "cli_loaded": "fedmist.cli" in sys.modules}))
    time.sleep(float(os.environ.get("PROBE_SLEEP", "0")))
    raise SystemExit(int(os.environ.get("PROBE_EXIT", "0")))
