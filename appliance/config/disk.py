"""Checks against the box's own disk: that each file the config names (greetings, music on
hold, the installer's certificate and key) is there and of the right kind. The portal, which
has none of these files, validates a config without them (loader.parse with on_box=False)."""
from __future__ import annotations

import hashlib

from .fields import FileRef
from .nodes import Reader


def check_files(r: Reader, refs: list[FileRef]) -> None:
    """Stores each file that is there; reports each that is not, on its line."""
    for ref in refs:
        path = ref.path
        if not path.is_file():
            r.error(ref.node, f"{ref.label}: no such {'WAV file' if ref.kind == 'wav' else 'file'} {path}")
        elif ref.kind == "pem" and b"-----BEGIN " not in path.read_bytes()[:4096]:
            r.error(ref.node, f"{ref.label}: {path} is not a PEM file")
        elif ref.sha256 and file_sha256(path) != ref.sha256:
            r.error(ref.node, f"{ref.label}: {path} is not the sound the portal sent (its content changed)")
        else:
            setattr(ref.target, ref.attr, path)


def accept_files(refs: list[FileRef]) -> None:
    """Off the box: the paths are stored as given, unchecked."""
    for ref in refs:
        setattr(ref.target, ref.attr, ref.path)


def file_sha256(path) -> str:  # noqa: ANN001 - a pathlib.Path
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
