"""What every store offers (Storage), and the key a recording's or a firmware file's bytes have there."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

READ_CHUNK = 64 << 10


# by content hash: calls' audio, phones' firmware, box software, offices' greetings and music
KINDS = {"recordings": ".wav", "firmware": ".bin", "releases": ".raucb", "sounds": ".wav"}


def key_for(sha256: str, kind: str = "recordings") -> str:
    return f"{kind}/{sha256[:2]}/{sha256}{KINDS[kind]}"


class Storage(Protocol):
    def put_file(self, sha256: str, path: Path, kind: str = "recordings") -> None: ...
    def exists(self, sha256: str, kind: str = "recordings") -> bool: ...
    def open(self, sha256: str, kind: str = "recordings") -> BinaryIO: ...
    def read_range(self, sha256: str, start: int, end: int, kind: str = "recordings") -> Iterator[bytes]: ...
    def staging_dir(self) -> Path: ...


def staged_file(storage: Storage) -> tuple[BinaryIO, Path]:
    """A temporary file beside the store (same file system, so put_file is a rename)."""
    fd, name = tempfile.mkstemp(dir=storage.staging_dir(), suffix=".part")
    return os.fdopen(fd, "wb"), Path(name)


def put_copy(storage: Storage, source: Path, kind: str) -> str:
    """Copies a file into the store under its SHA-256, hashing as it streams (a file of hundreds
    of megabytes never sits in memory); returns the hash."""
    digest = hashlib.sha256()
    out, staged = staged_file(storage)
    with out, open(source, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    storage.put_file(digest.hexdigest(), staged, kind=kind)
    return digest.hexdigest()
