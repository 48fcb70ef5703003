"""The S3 transmitter's data path: payloads go to ``aggDataPath`` by multipart upload, only keys and hashes
travel over the websocket control channel (DESIGN sections 3 and 6).

Objects live at ``s3://<bucket>/<prefix>/<job>/<worker>/<name>``. Uploads stream part by part (memory stays
at one part), carry their SHA-256 as object metadata, and downloads verify it while streaming into the
caller's sink, so a corrupted or swapped object is refused before anything trains on it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from fedmist.transport.base import TransportError

log = logging.getLogger("fedmist.s3")

PART_BYTES = 8 * 1024 * 1024  # S3's minimum part is 5 MiB; 8 MiB keeps memory small and requests few


class S3Error(TransportError):
    """An S3 operation failed; one line naming the bucket/key and the reason."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> "S3Location":
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise S3Error(f"aggDataPath must look like s3://bucket/prefix (got {url!r})")
        return cls(parsed.netloc, parsed.path.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p)


class S3Transmitter:
    """Upload, download and clean up one job's payload objects."""

    def __init__(self, location: S3Location, endpoint_url: str, access_key_id: str, secret_access_key: str) -> None:
        self.location = location
        self._client = boto3.client(
            "s3", endpoint_url=endpoint_url or None, aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None, region_name="us-east-1",
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60,
                          s3={"addressing_style": "path"}),
        )

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (an existing one is left as it is)."""
        try:
            self._client.head_bucket(Bucket=self.location.bucket)
        except ClientError:
            self._call("create bucket", self.location.bucket, lambda: self._client.create_bucket(Bucket=self.location.bucket))

    def upload(self, key: str, chunks: Iterable[bytes | memoryview]) -> tuple[str, int]:
        """Multipart-upload the concatenated ``chunks``; return (sha256 hex, size). Aborts on failure."""
        bucket = self.location.bucket
        digest = hashlib.sha256()
        size = 0
        upload_id = self._call("start upload", key, lambda: self._client.create_multipart_upload(
            Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256"))["UploadId"]
        parts: list[dict] = []
        buffer = bytearray()
        try:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                buffer += chunk
                while len(buffer) >= PART_BYTES:
                    parts.append(self._part(key, upload_id, len(parts) + 1, bytes(buffer[:PART_BYTES])))
                    del buffer[:PART_BYTES]
            if buffer or not parts:
                parts.append(self._part(key, upload_id, len(parts) + 1, bytes(buffer)))
            self._call("complete upload", key, lambda: self._client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}))
        except BaseException:
            try:
                self._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except (ClientError, BotoCoreError):
                pass
            raise
        return digest.hexdigest(), size

    def _part(self, key: str, upload_id: str, number: int, data: bytes) -> dict:
        """One part, with its SHA-256 so the server refuses a part corrupted on the way."""
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        response = self._call(f"upload part {number}", key, lambda: self._client.upload_part(
            Bucket=self.location.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data,
            ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum))
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}

    def download(self, key: str, expected_sha256: str, expected_size: int, sink: Callable[[int, bytes], None],
                 block: int = 1024 * 1024) -> None:
        """Stream the object into ``sink(offset, data)``; raise S3Error if its size or hash differ."""
        response = self._call("download", key, lambda: self._client.get_object(Bucket=self.location.bucket, Key=key))
        if response["ContentLength"] != expected_size:
            raise S3Error(f"s3://{self.location.bucket}/{key}: {response['ContentLength']} bytes, expected {expected_size}")
        digest = hashlib.sha256()
        offset = 0
        try:
            for data in response["Body"].iter_chunks(block):
                digest.update(data)
                sink(offset, data)
                offset += len(data)
        except (ClientError, BotoCoreError) as exc:
            raise S3Error(f"s3://{self.location.bucket}/{key}: download failed: {exc}") from None
        if digest.hexdigest() != expected_sha256:
            raise S3Error(f"s3://{self.location.bucket}/{key}: sha256 does not match the sender's")

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix``; return how many."""
        removed = 0
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.location.bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self._call("delete", prefix, lambda: self._client.delete_objects(
                    Bucket=self.location.bucket, Delete={"Objects": keys}))
                removed += len(keys)
        return removed

    def _call(self, what: str, key: str, operation: Callable[[], dict]) -> dict:
        try:
            return operation()
        except (ClientError, BotoCoreError) as exc:
            raise S3Error(f"s3://{self.location.bucket}/{key}: {what} failed: {exc}") from None
