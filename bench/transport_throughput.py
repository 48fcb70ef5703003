"""Benchmark: moving one large tensor payload over loopback, fedmist's framing vs a raw TCP copy, same run.

    .venv/bin/python bench/transport_throughput.py [--mb 256] [--s3] [--repeat 3]

Variants (receiver in its own process, sender here; MB/s = payload MB / seconds from first byte sent to the
receiver's confirmation; CPU s = user+system seconds each side spent on the transfer, which is what a shared,
loaded machine distorts least):
- raw TCP: socket.sendall of the bytes in 4 MiB pieces, receiver reads into one buffer (the peer/ceiling);
- ws: fedmist's own payload path (``send_payload``/``recv_payload``: per-chunk BLAKE3, HMAC, validation,
  assembly into one buffer) over websockets, in fedmist's default chunks;
- wss: the same over TLS with a per-job CA;
- S3 (with --s3): multipart upload and streamed download through boto3 to moto's standalone server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHUNK = 4 * 1024 * 1024
TOKEN = "bench-token"


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- receivers (run as child processes) ----------------------------------------------------------------------
def receive_raw(port: int, total: int) -> None:
    with socket.create_server(("127.0.0.1", port)) as server:
        print("ready", flush=True)
        conn, _ = server.accept()
        started = cpu_s()
        buffer = bytearray(total)
        view = memoryview(buffer)
        got = 0
        while got < total:
            n = conn.recv_into(view[got:], min(CHUNK, total - got))
            if not n:
                break
            got += n
        conn.sendall(b"k")
        conn.close()
        print(f"cpu {cpu_s() - started:.3f}", flush=True)


def receive_ws(port: int, total: int, tls_dir: str) -> None:
    from fedmist.transport import ws
    from fedmist.transport.payload import recv_payload
    from fedmist.transport.security import Security
    from fedmist.wire.envelope import Envelope, Limits

    security = Security.from_files(TOKEN, cert=f"{tls_dir}/tls.crt", key=f"{tls_dir}/tls.key") if tls_dir \
        else Security(token=TOKEN)
    done = asyncio.Event()
    spent = [0.0]

    async def handler(channel) -> None:
        from fedmist.transport.handshake import accept

        await accept(channel, TOKEN, "bench", 60)  # what an aggregator does first (before the timed transfer)
        first, body = await channel.recv(60)
        started = cpu_s()
        _, buffer = await recv_payload(channel, first, body, 120, total)
        assert len(buffer) == total
        await channel.send(Envelope(type="ack", job="bench", worker="receiver"))
        spent[0] = cpu_s() - started
        done.set()

    async def main() -> None:
        server = await ws.serve(handler, "127.0.0.1", port, Limits(max_payload_bytes=total), security)
        print("ready", flush=True)
        await done.wait()
        await asyncio.sleep(0.1)
        server.close()

    asyncio.run(main())
    print(f"cpu {spent[0]:.3f}", flush=True)


# --- senders -------------------------------------------------------------------------------------------------
def start_receiver(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, "--receiver", *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def receiver_cpu(proc: subprocess.Popen) -> float:
    """The receiver's CPU seconds on the transfer (it prints them when done)."""
    line = proc.stdout.readline().strip()
    proc.wait(30)
    return float(line.split()[1])


def send_raw(payload: bytes) -> tuple[float, float, float]:
    """(seconds, sender CPU s, receiver CPU s)"""
    port = free_port()
    proc = start_receiver("raw", str(port), str(len(payload)))
    cpu = cpu_s()
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        view = memoryview(payload)
        for offset in range(0, len(payload), CHUNK):
            sock.sendall(view[offset:offset + CHUNK])
        assert sock.recv(1) == b"k"
    elapsed, cpu = time.perf_counter() - started, cpu_s() - cpu
    return elapsed, cpu, receiver_cpu(proc)


def send_ws(payload: bytes, tls_dir: str) -> tuple[float, float, float]:
    from fedmist.transport import ws
    from fedmist.transport.payload import send_payload
    from fedmist.transport.security import Security
    from fedmist.wire.envelope import Envelope

    port = free_port()
    proc = start_receiver("ws", str(port), str(len(payload)), tls_dir)
    security = Security.from_files(TOKEN, ca=f"{tls_dir}/ca.crt", job="bench", worker="sender") if tls_dir \
        else Security(token=TOKEN, job="bench", worker="sender")
    scheme = "wss" if tls_dir else "ws"

    async def main() -> tuple[float, float]:
        channel = await ws.connect(f"{scheme}://127.0.0.1:{port}", security=security)
        cpu = cpu_s()
        started = time.perf_counter()
        await send_payload(channel, Envelope(type="weights", job="bench", worker="sender", kind="safetensors"),
                           payload)
        await channel.recv(60)
        elapsed, cpu = time.perf_counter() - started, cpu_s() - cpu
        await channel.close()
        return elapsed, cpu

    elapsed, cpu = asyncio.run(main())
    return elapsed, cpu, receiver_cpu(proc)


def s3_round_trip(payload: bytes) -> tuple[float, float]:
    from fedmist.transport.s3 import S3Location, S3Transmitter

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        s3 = S3Transmitter(S3Location("bench", "payloads"), f"http://127.0.0.1:{port}", "testing", "testing")
        s3.ensure_bucket()
        view = memoryview(payload)
        started = time.perf_counter()
        sha, size = s3.upload("payloads/blob", (view[o:o + CHUNK] for o in range(0, len(payload), CHUNK)))
        upload = time.perf_counter() - started
        sink = bytearray(size)

        def write(offset: int, data: bytes) -> None:
            sink[offset:offset + len(data)] = data

        started = time.perf_counter()
        s3.download("payloads/blob", sha, size, write)
        download = time.perf_counter() - started
        assert sink == payload
        return upload, download
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--receiver":
        role, port, total = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        receive_raw(port, total) if role == "raw" else receive_ws(port, total, sys.argv[5] if len(sys.argv) > 5 else "")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--s3", action="store_true", help="also measure S3 upload/download against moto")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant (interleaved); one row each")
    args = parser.parse_args()
    payload = os.urandom(args.mb * 1024 * 1024)
    mb = len(payload) / 1e6
    from fedmist.transport.payload import DEFAULT_CHUNK_BYTES
    from fedmist.transport.tls import make_job_pki

    print(f"ws chunks: {DEFAULT_CHUNK_BYTES // 1024} KiB; load average {os.getloadavg()[0]:.1f} at start")
    print(f"| run | transport | {args.mb} MiB payload seconds | MB/s | vs raw TCP | sender CPU s | receiver CPU s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        make_job_pki(Path(tmp), "bench", ["127.0.0.1"])
        for run in range(1, args.repeat + 1):
            raw = send_raw(payload)
            rows = (("raw TCP (peer)", raw), ("fedmist ws", send_ws(payload, "")), ("fedmist wss", send_ws(payload, tmp)))
            for name, (seconds, sender, receiver) in rows:
                print(f"| {run} | {name} | {seconds:.2f} | {mb / seconds:.0f} | {raw[0] / seconds:.2f}x | "
                      f"{sender:.2f} | {receiver:.2f} |", flush=True)
    if args.s3:
        up, down = s3_round_trip(payload)
        print(f"| S3 upload (moto, boto3 multipart) | {up:.2f} | {mb / up:.0f} | - |")
        print(f"| S3 download (moto, streamed + sha256) | {down:.2f} | {mb / down:.0f} | - |")


if __name__ == "__main__":
    main()
