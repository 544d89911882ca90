"""SIP passwords: from the config when given, else generated once and kept under data_dir.

A phone must keep working across restarts, so a generated password is stored (mode 0600) and
reused; it is never the same for two extensions.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from .config import Config

FILE_NAME = "credentials.json"


def _store_path(cfg: Config) -> Path:
    return cfg.data_dir / FILE_NAME


def sip_passwords(cfg: Config) -> dict[str, str]:
    """Returns extension -> password, generating and saving any that are missing."""
    path = _store_path(cfg)
    stored: dict[str, str] = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            # A corrupt store must not silently lock every phone out with new passwords.
            raise RuntimeError(f"{path}: unreadable credentials store; fix or remove it") from None
    changed = False
    result: dict[str, str] = {}
    for ext in cfg.extensions:
        if ext.password:
            result[ext.number] = ext.password
        else:
            if ext.number not in stored:
                stored[ext.number] = secrets.token_urlsafe(12)
                changed = True
            result[ext.number] = stored[ext.number]
    if changed:
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(stored, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    return result
