"""Where recordings' bytes live, by content hash: a local directory shared by every portal
instance (default, local.py), or S3-compatible object storage (s3.py). The database only says
which site holds which hash.
"""
from __future__ import annotations

from pathlib import Path

from .base import Storage, key_for, put_copy, staged_file
from .local import LocalStorage

__all__ = ["Storage", "LocalStorage", "key_for", "open_storage", "put_copy", "staged_file"]


def open_storage(spec: str | None, data_dir: Path) -> Storage:
    """`spec`: None (data_dir/objects), a directory, or s3://BUCKET[/PREFIX] (storage/s3.py)."""
    if spec and spec.startswith("s3://"):
        from .s3 import S3Storage
        return S3Storage.from_url(spec, data_dir)
    return LocalStorage(Path(spec) if spec else data_dir / "objects")

