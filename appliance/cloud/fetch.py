"""Large files from the portal a chunk per agent round (phone firmware, box software bundles):
resumed from the bytes already on disk after a restart or an outage, and checked whole against
their SHA-256 before anything uses them."""
from __future__ import annotations

import hashlib
from pathlib import Path

from .client import PortalClient

CHUNK = 4 << 20


def next_chunk(client: PortalClient, url: str, part: Path, size: int) -> bool:
    """Appends the next CHUNK of `url` to `part`; True once `part` holds all `size` bytes."""
    offset = part.stat().st_size if part.exists() else 0
    if offset < size:
        end = min(offset + CHUNK, size) - 1
        data = client.download(url, CHUNK, (offset, end))
        with open(part, "ab") as fh:
            fh.write(data)
        offset += len(data)
    return offset >= size


def whole(part: Path, sha256: str, size: int) -> bool:
    """Whether `part` is exactly the file the portal named (its size and SHA-256)."""
    if part.stat().st_size != size:
        return False
    digest = hashlib.sha256()
    with open(part, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == sha256
