"""Recordings in a directory shared by every portal instance (the default)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Iterator

from .base import READ_CHUNK, key_for


class LocalStorage:
    """A directory shared by every portal instance (one machine, or a network file system)."""

    def __init__(self, root: Path):
        self.root = root
        (root / "staging").mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str, kind: str = "recordings") -> Path:
        return self.root / key_for(sha256, kind)

    def put_file(self, sha256: str, path: Path, kind: str = "recordings") -> None:
        """Moves a verified file into place; the same content twice is harmless."""
        target = self.path(sha256, kind)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(path, target)

    def exists(self, sha256: str, kind: str = "recordings") -> bool:
        return self.path(sha256, kind).exists()

    def open(self, sha256: str, kind: str = "recordings") -> BinaryIO:
        return open(self.path(sha256, kind), "rb")

    def read_range(self, sha256: str, start: int, end: int, kind: str = "recordings") -> Iterator[bytes]:
        """Bytes start..end inclusive, in chunks (a player seeking in a long recording)."""
        with open(self.path(sha256, kind), "rb") as fh:
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
