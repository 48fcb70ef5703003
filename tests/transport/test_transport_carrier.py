"""Weights carriers: inline frames (ws) and S3 objects announced by key and hash, against a real S3-compatible
server (moto's, in a thread, over HTTP on 127.0.0.1) through boto3."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace

import boto3
import pytest
from moto.server import ThreadedMotoServer

from fedmist.transport.base import Channel
from fedmist.transport.carrier import S3Carrier, WsCarrier
from fedmist.transport.s3 import S3Location, S3Transmitter
from fedmist.wire.envelope import Envelope, Limits, ProtocolError, decode, encode

PAYLOAD = bytes(range(256)) * 40_000  # 10 MB: two multipart parts


class QueueChannel(Channel):
    """An in-memory link whose frames are really encoded and decoded."""

    def __init__(self) -> None:
        self.peer = "memory"
        self.frames: asyncio.Queue[bytes] = asyncio.Queue()

    async def send(self, envelope: Envelope, body=b"") -> int:  # type: ignore[no-untyped-def]
        frame = encode(envelope, body)
        await self.frames.put(frame)
        return len(frame)

    async def recv(self, timeout: float) -> tuple[Envelope, memoryview]:
        return decode(await asyncio.wait_for(self.frames.get(), timeout), Limits())

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def s3_endpoint():  # type: ignore[no-untyped-def]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _carrier(endpoint: str, bucket: str) -> S3Carrier:
    transmitter = S3Transmitter(S3Location(bucket, "agg"), endpoint, "testing", "testing")
    transmitter.ensure_bucket()
    return S3Carrier(transmitter, lambda worker, name: transmitter.location.key("job", worker, name), "agg/job/")


def _keys(endpoint: str, bucket: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def _fit(worker: str = "aggregator") -> Envelope:
    return Envelope(type="fit", job="job", worker=worker, round=2, kind="safetensors", meta={"rounds": 3})


def test_s3_carrier_publishes_once_and_receivers_verify(s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    carrier = _carrier(s3_endpoint, "carrier-ok")

    async def scenario() -> tuple[int, int, bytearray, int, Envelope]:
        published = await carrier.publish("aggregator", "round-2", PAYLOAD)
        channel = QueueChannel()
        sent = await carrier.send(channel, _fit(), published)
        first, body = await channel.recv(1)
        payload, via_object = await carrier.receive(channel, first, body, "round-2", 30, len(PAYLOAD))
        return sent, channel.frames.qsize(), payload, via_object, first

    sent, left, payload, via_object, first = asyncio.run(scenario())
    assert bytes(payload) == PAYLOAD and via_object == len(PAYLOAD) and left == 0
    assert first.kind == "none" and first.size == 0 and first.meta["rounds"] == 3  # only the key crossed
    assert first.meta["object"] == {"key": "agg/job/aggregator/round-2.safetensors",
                                    "sha256": hashlib.sha256(PAYLOAD).hexdigest(), "size": len(PAYLOAD)}
    assert len(PAYLOAD) < sent < len(PAYLOAD) + 1000
    assert _keys(s3_endpoint, "carrier-ok") == ["agg/job/aggregator/round-2.safetensors"]
    assert asyncio.run(carrier.cleanup()) == 1 and _keys(s3_endpoint, "carrier-ok") == []


@pytest.mark.parametrize(("change", "error"), [
    ({"key": "agg/job/edge2/round-2.safetensors"},
     "worker 'edge1' named object 'agg/job/edge2/round-2.safetensors'; expected 'agg/job/edge1/round-2.safetensors'"),
    ({"sha256": "0" * 64}, "s3://carrier-bad/agg/job/edge1/round-2.safetensors: sha256 does not match the sender's"),
    ({"size": 11}, "s3://carrier-bad/agg/job/edge1/round-2.safetensors: 10 bytes, expected 11"),
    ({"size": 10**9}, "'fit_result' object of 1000000000 bytes outside 0..100"),
])
def test_s3_carrier_refuses_a_wrong_key_hash_or_size(s3_endpoint, change, error) -> None:  # type: ignore[no-untyped-def]
    carrier = _carrier(s3_endpoint, "carrier-bad")

    async def scenario() -> None:
        published = await carrier.publish("edge1", "round-2", b"0123456789")
        edge2 = await carrier.publish("edge2", "round-2", b"not edge1!")
        assert edge2.object is not None
        ref = {**published.object, **change}  # type: ignore[dict-item]
        envelope = Envelope(type="fit_result", job="job", worker="edge1", round=2, meta={"object": ref})
        await carrier.receive(QueueChannel(), envelope, memoryview(b""), "round-2", 30, 100)

    with pytest.raises(ProtocolError) as info:
        asyncio.run(scenario())
    assert str(info.value) == error


def test_ws_carrier_refuses_an_object_announcement_and_s3_refuses_inline_bodies(s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    announced = replace(_fit(), meta={"object": {"key": "k", "sha256": "0" * 64, "size": 1}})
    with pytest.raises(ProtocolError, match="announces an S3 object, but this job's transmitter is ws"):
        asyncio.run(WsCarrier().receive(QueueChannel(), announced, memoryview(b""), "round-2", 1, 100))
    with pytest.raises(ProtocolError, match="must announce an object"):
        asyncio.run(_carrier(s3_endpoint, "carrier-inline").receive(
            QueueChannel(), _fit(), memoryview(b""), "round-2", 1, 100))


def test_the_aggregator_removes_payload_objects_unless_keep_payloads() -> None:
    from types import SimpleNamespace

    from fedmist.worker.rounds.aggregator import _cleanup

    class CountingCarrier(WsCarrier):
        calls = 0

        async def cleanup(self) -> int:
            self.calls += 1
            return 9

    for keep, calls in ((True, 0), (False, 1)):
        server = SimpleNamespace(carrier=CountingCarrier())
        asyncio.run(_cleanup(server, SimpleNamespace(params=SimpleNamespace(keep_payloads=keep), job="j")))  # type: ignore[arg-type]
        assert server.carrier.calls == calls
