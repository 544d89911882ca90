"""Recordings in S3-compatible object storage (a provider's choice for several portal instances).

`--storage s3://BUCKET[/PREFIX]`; the endpoint and credentials come from boto3's usual
environment: AWS_ENDPOINT_URL (for any S3-compatible service), AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION. Objects carry an x-amz-checksum-sha256, so a store that
verifies it (AWS S3 does; moto, the tests' server, does not) keeps only the bytes the portal checked.
"""
from __future__ import annotations

import base64
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import urlsplit

from .base import key_for


class S3Storage:
    def __init__(self, client, bucket: str, prefix: str, staging: Path):  # noqa: ANN001 - a boto3 S3 client
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")
        self.staging = staging
        staging.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_url(cls, url: str, data_dir: Path) -> "S3Storage":
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"storage {url!r}: expected s3://BUCKET[/PREFIX]")
        client = boto3.client("s3", config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                                  retries={"max_attempts": 5, "mode": "standard"}))
        return cls(client, parts.netloc, parts.path, data_dir / "staging")

    def key(self, sha256: str, kind: str = "recordings") -> str:
        return f"{self.prefix}/{key_for(sha256, kind)}" if self.prefix else key_for(sha256, kind)

    def put_file(self, sha256: str, path: Path, kind: str = "recordings") -> None:
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        with open(path, "rb") as fh:
            self.client.put_object(Bucket=self.bucket, Key=self.key(sha256, kind), Body=fh, ChecksumSHA256=checksum,
                                   ContentType="audio/wav" if kind == "recordings" else "application/octet-stream")
        path.unlink(missing_ok=True)

    def exists(self, sha256: str, kind: str = "recordings") -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(sha256, kind))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def open(self, sha256: str, kind: str = "recordings") -> BinaryIO:
        return self.client.get_object(Bucket=self.bucket, Key=self.key(sha256, kind))["Body"]

    def read_range(self, sha256: str, start: int, end: int, kind: str = "recordings") -> Iterator[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=self.key(sha256, kind),
                                      Range=f"bytes={start}-{end}")["Body"]
        yield from body.iter_chunks(64 << 10)

    def staging_dir(self) -> Path:
        return self.staging
