"""Benchmark: CPU cost of ws framing per side with the websockets library (used before picows), no network.

    .venv/bin/python bench/transport_cpu.py [--mb 128]

Why beside transport_throughput.py: wall-clock throughput over loopback swings by 2x on a shared machine,
while CPU seconds of the framing work move much less. Sender = ``encode`` (the body digest -- BLAKE3
since wire protocol 2, SHA-256 before -- and the HMAC of the header) + the websocket frame with the client mask
(websockets' own serializer); receiver = websockets' stream reader fed 256 KiB reads (as asyncio delivers them) + unmasking + ``decode`` (MAC, header checks,
body digest) + copying into the payload buffer. MB/s = payload / CPU seconds (process time, one thread).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from fedmist.transport.payload import PayloadAssembler
from fedmist.transport.security import derive_mac_key
from fedmist.wire.envelope import Envelope, body_digest, decode, encode

READ = 256 * 1024  # asyncio's selector transports read at most this much per call


def measure(payload: bytes, chunk: int, key: bytes) -> tuple[float, float]:
    """(sender CPU s, receiver CPU s) for moving ``payload`` in ``chunk``-byte frames."""
    total, view = len(payload), memoryview(payload)
    started = time.process_time()
    wire = []
    for offset in range(0, total, chunk):
        frame = encode(Envelope(type="w", job="j", worker="s", kind="raw", size=total, offset=offset),
                       view[offset:offset + chunk], key)
        wire.append(Frame(Opcode.BINARY, frame).serialize(mask=True, extensions=[]))
    sent = time.process_time()
    assembler = None
    for data in wire:
        reader = StreamReader()
        for start in range(0, len(data), READ):
            reader.feed_data(data[start:start + READ])
        parser = Frame.parse(reader.read_exact, mask=True, max_size=None, extensions=[])
        try:
            next(parser)
            raise AssertionError("frame incomplete")
        except StopIteration as stop:
            envelope, body = decode(stop.value.data, None, key)
        assembler = assembler or PayloadAssembler(envelope, total)
        assembler.add(envelope, body)
    received = time.process_time()
    assert assembler is not None and assembler.complete and assembler.buffer == payload
    return sent - started, received - sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=128)
    args = parser.parse_args()
    payload = os.urandom(args.mb * 2**20)
    key = derive_mac_key("bench")
    mb = len(payload) / 1e6
    started = time.process_time()
    hashlib.sha256(payload).digest()
    sha = mb / (time.process_time() - started)
    started = time.process_time()
    body_digest(payload)
    b3 = mb / (time.process_time() - started)
    print(f"{args.mb} MiB payload; SHA-256 alone {sha:.0f} MB/s, BLAKE3 (the body digest) {b3:.0f} MB/s; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| chunk | sender CPU s | sender MB/s | receiver CPU s | receiver MB/s |")
    print("|---|---|---|---|---|")
    for chunk in (4 * 2**20, 2**20, 256 * 2**10):
        sender, receiver = measure(payload, chunk, key)
        print(f"| {chunk // 1024} KiB | {sender:.3f} | {mb / sender:.0f} | {receiver:.3f} | {mb / receiver:.0f} |")


if __name__ == "__main__":
    main()
