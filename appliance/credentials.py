"""SIP passwords: from the config when given, else generated once and kept under data_dir.

A phone must keep working across restarts, so a generated password is stored (mode 0600) and
reused; it is never the same for two extensions.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

from .config import Config
from .files import write_private_json

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
        write_private_json(path, stored)
    return result
