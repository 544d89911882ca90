"""Writing files that hold secrets: readable by the appliance only, never half-written; and small
state files that may be lost to a power cut but never read half-written."""
from __future__ import annotations

import json
import os
from pathlib import Path


def write_private(path: Path, text: str | bytes) -> None:
    """Writes `text` (or bytes) to `path` with mode 0600 via a temporary file, fsync and rename, so
    a power cut leaves either the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_private_json(path: Path, data: object) -> None:
    write_private(path, json.dumps(data, indent=1, sort_keys=True))


def write_state_json(path: Path, data: object) -> None:
    """Renames over the old file without fsync: state that is rewritten often (an fsync each time
    would wear an SD card) and harmless to lose."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def read_state_json(path: Path) -> dict:
    """The state file's content, or {} when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
