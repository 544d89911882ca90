"""Where recordings' bytes live, by content hash: a local directory shared by every portal
instance (default), or S3-compatible object storage (portal/s3.py). The database only says which
site holds which hash.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

READ_CHUNK = 64 << 10


def key_for(sha256: str) -> str:
    return f"recordings/{sha256[:2]}/{sha256}.wav"


class Storage(Protocol):
    def put_file(self, sha256: str, path: Path) -> None: ...
    def exists(self, sha256: str) -> bool: ...
    def open(self, sha256: str) -> BinaryIO: ...
    def read_range(self, sha256: str, start: int, end: int) -> Iterator[bytes]: ...
    def staging_dir(self) -> Path: ...


class LocalStorage:
    """A directory shared by every portal instance (one machine, or a network file system)."""

    def __init__(self, root: Path):
        self.root = root
        (root / "staging").mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / key_for(sha256)

    def put_file(self, sha256: str, path: Path) -> None:
        """Moves a verified file into place; the same content twice is harmless."""
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(path, target)

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path(sha256), "rb")

    def read_range(self, sha256: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes start..end inclusive, in chunks (a player seeking in a long recording)."""
        with open(self.path(sha256), "rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                data = fh.read(min(READ_CHUNK, left))
                if not data:
                    return
                left -= len(data)
                yield data

    def staging_dir(self) -> Path:
        return self.root / "staging"


def staged_file(storage: Storage) -> tuple[BinaryIO, Path]:
    """A temporary file beside the store (same file system, so put_file is a rename)."""
    fd, name = tempfile.mkstemp(dir=storage.staging_dir(), suffix=".part")
    return os.fdopen(fd, "wb"), Path(name)


def open_storage(spec: str | None, data_dir: Path) -> Storage:
    """`spec`: None (data_dir/objects), a directory, or s3://BUCKET[/PREFIX] (portal/s3.py)."""
    if spec and spec.startswith("s3://"):
        from .s3 import S3Storage
        return S3Storage.from_url(spec, data_dir)
    return LocalStorage(Path(spec) if spec else data_dir / "objects")

