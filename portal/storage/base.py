"""What every recordings store offers (Storage), and the key a recording's bytes have there."""
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


def staged_file(storage: Storage) -> tuple[BinaryIO, Path]:
    """A temporary file beside the store (same file system, so put_file is a rename)."""
    fd, name = tempfile.mkstemp(dir=storage.staging_dir(), suffix=".part")
    return os.fdopen(fd, "wb"), Path(name)
