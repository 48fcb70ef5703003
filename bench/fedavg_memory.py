"""Benchmark: peak memory of the FedAvg aggregator with a large model, in model copies.

    .venv/bin/python bench/fedavg_memory.py [--mb 512] [--rounds 2] [--trainers 2]

The real aggregator process (``python -m fedmist worker aggregate``, the env contract of DESIGN section 4)
runs FedAvg over a synthetic model of ``--mb`` MiB of float32 weights (this module's ``synthetic_model``,
named by import path like any user model). The trainers are lean protocol clients in this process: each
receives the global model and sends it straight back, so all the memory measured is the aggregator's.
It runs twice -- with a tiny model, then the large one -- and reports the aggregator's peak RSS (VmHWM) and
its RSS sampled during the rounds, as ``(large - tiny) / model size`` = model copies held at the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-memory-token"
WIDTH = 4096  # one Linear(4096, 4096) layer: 64 MiB of float32 weights


def synthetic_model(num_classes: int = 10):  # type: ignore[no-untyped-def]
    """A stack of square Linear layers of about ``FEDMIST_BENCH_MODEL_MB`` MiB (read when called)."""
    import torch
    from torch import nn

    mb = float(os.environ.get("FEDMIST_BENCH_MODEL_MB", "0"))
    width = WIDTH if mb >= 64 else 64
    layers = max(1, round(mb * 2**20 / (4 * width * width)))
    model = nn.Sequential(*(nn.utils.skip_init(nn.Linear, width, width) for _ in range(layers)),
                          nn.Linear(width, num_classes))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-0.01, 0.01)
    return model


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def _trainer(name: str, port: int, job: str) -> int:
    """HELLO, then echo every FIT's weights back as the FIT_RESULT until STOP; return rounds served."""
    from fedmist.transport.connect import connect_with_retry
    from fedmist.transport.payload import recv_payload, send_payload
    from fedmist.transport.security import Security
    from fedmist.wire.envelope import Envelope

    channel = await connect_with_retry(f"ws://127.0.0.1:{port}", deadline_s=300,
                                       security=Security(token=TOKEN, job=job, worker=name))
    await channel.send(Envelope(type="hello", job=job, worker=name, meta={
        "role": "trainer", "num_samples": 100, "dataset": "synthetic"}))
    rounds = 0
    while True:
        envelope, body = await channel.recv(900)
        if envelope.type == "stop":
            await channel.close()
            return rounds
        _, payload = await recv_payload(channel, envelope, body, 900, 8 * 2**30)
        await send_payload(channel, Envelope(type="fit_result", job=job, worker=name, round=envelope.round,
                                             kind="safetensors",
                                             meta={"num_samples": 100, "metrics": {}, "compute_s": 0.0}), payload)
        del payload
        rounds += 1


def run_once(mb: float, rounds: int, trainers: int) -> dict[str, float]:
    """One aggregator process over ``rounds`` rounds; its peak and in-round RSS in MiB."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "JOB_NAME": "membench", "WORKER_NAME": "aggregator", "NAMESPACE": "default",
               "PARTICIPANTS_COUNT": str(trainers), "TRANSMITTER": "ws", "aggregation_algorithm": "fedavg",
               "model": "bench.fedavg_memory:synthetic_model", "exit_round": str(rounds),
               "min_clients": str(trainers), "round_timeout": "600", "MODEL_URL": f"{tmp}/model.pth",
               "AGG_BIND_PORT": str(port), "FEDMIST_TOKEN": TOKEN, "FEDMIST_BIND_HOST": "127.0.0.1",
               "FEDMIST_THREADS": "1", "OMP_NUM_THREADS": "1", "FEDMIST_STATE_DIR": f"{tmp}/state",
               "FEDMIST_BENCH_MODEL_MB": str(mb), "OMP_WAIT_POLICY": "PASSIVE"}
        with open(f"{tmp}/aggregator.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "fedmist", "worker", "aggregate"], env=env, cwd=REPO,
                                    stdout=log, stderr=subprocess.STDOUT)
        samples: list[tuple[float, int]] = []
        in_rounds = [False]

        async def sample() -> None:
            while proc.poll() is None:
                samples.append((time.monotonic(), _rss_kb(proc.pid, "VmRSS") if in_rounds[0] else 0))
                peak[0] = max(peak[0], _rss_kb(proc.pid, "VmHWM"))
                await asyncio.sleep(0.01)

        async def main() -> list[int]:
            sampler = asyncio.ensure_future(sample())
            clients = [asyncio.ensure_future(_trainer(f"edge{i + 1}", port, "membench")) for i in range(trainers)]
            while not Path(f"{tmp}/aggregator.log").read_text().count("listening on"):
                await asyncio.sleep(0.05)
            in_rounds[0] = True
            served = await asyncio.gather(*clients)
            await asyncio.to_thread(proc.wait, 600)
            await sampler
            return served

        peak = [0]
        served = asyncio.run(main())
        if proc.returncode != 0:
            sys.exit(f"aggregator failed:\n{Path(f'{tmp}/aggregator.log').read_text()[-3000:]}")
    return {"peak_mb": peak[0] / 1024, "rounds_peak_mb": max(r for _, r in samples) / 1024, "served": min(served)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=512, help="model size in MiB of float32 weights")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trainers", type=int, default=2)
    args = parser.parse_args()
    tiny = run_once(0, args.rounds, args.trainers)
    big = run_once(args.mb, args.rounds, args.trainers)
    layers = max(1, round(args.mb * 2**20 / (4 * WIDTH * WIDTH)))
    model_mb = (layers * (WIDTH * WIDTH + WIDTH) + WIDTH * 10 + 10) * 4 / 2**20
    print(f"model {model_mb:.0f} MiB float32, {args.trainers} trainers, {args.rounds} rounds "
          f"(load average {os.getloadavg()[0]:.1f})")
    print("| aggregator RSS | tiny model MiB | large model MiB | model copies |")
    print("|---|---|---|---|")
    for key, label in (("peak_mb", "peak over the whole job (VmHWM)"), ("rounds_peak_mb", "peak during rounds")):
        copies = (big[key] - tiny[key]) / model_mb
        print(f"| {label} | {tiny[key]:.0f} | {big[key]:.0f} | {copies:.2f} |")


if __name__ == "__main__":
    main()
