"""The container the kubelet tests run (``python -m kubelet_probe OUT CODE [wait]``): writes what it sees (env,
argv, the address a wildcard bind got, the address ``PROBE_RESOLVE`` resolves to, its pid) to OUT as JSON,
then exits with CODE, or with ``wait`` runs until signalled."""

import json
import os
import socket
import sys
import time
from pathlib import Path

out, code = Path(sys.argv[1]), int(sys.argv[2])
sock = socket.socket()
sock.bind(("0.0.0.0", 0))
name = os.environ.get("PROBE_RESOLVE")
seen = {"env": dict(os.environ), "argv": sys.argv, "bound": sock.getsockname()[0], "pid": os.getpid(),
        "resolved": socket.getaddrinfo(name, 80)[0][4][0] if name else None}
out.parent.mkdir(parents=True, exist_ok=True)
out.with_suffix(".tmp").write_text(json.dumps(seen))
out.with_suffix(".tmp").replace(out)
while sys.argv[3:] == ["wait"]:
    time.sleep(0.1)
sys.exit(code)
