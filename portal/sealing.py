"""Secrets at rest: what the portal's database holds that would let someone act as an office
(its config with SIP and trunk passwords, each site's backup key, webhook signing keys) is
encrypted with the portal's own key, which lives in a file beside the database, never in it.

The key is 32 random bytes in `EDGEPBX_PORTAL_KEY_FILE`, else `DATA_DIR/portal.key` (mode 0600,
made at the first start). Every instance behind a load balancer reads the same file. A value is
AES-256-GCM with a random nonce, stored as `sealed:1:KEYID:BASE64`; KEYID (the first 8 hex digits
of the key's SHA-256) lets a portal started with another key say so instead of serving nonsense.
Someone with a copy of the database alone reads no secret; someone with the key file too reads
them all, as the portal itself does.
"""
from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

PREFIX = "sealed:1:"
KEY_FILE_ENV = "EDGEPBX_PORTAL_KEY_FILE"
KEY_FILE = "portal.key"

_key: bytes | None = None


class SealingError(Exception):
    """The portal cannot open what it sealed: another key, or no key."""


def key_path(data_dir: Path) -> Path:
    return Path(os.environ[KEY_FILE_ENV]) if os.environ.get(KEY_FILE_ENV) else data_dir / KEY_FILE


def load_key(data_dir: Path) -> bytes:
    """The portal's key (made on the first start when no file is named by the environment) and
    from now on the one this process seals with."""
    from appliance.files import write_private

    path = key_path(data_dir)
    if not path.exists():
        if os.environ.get(KEY_FILE_ENV):
            raise SealingError(f"{path}: the portal's key file named by {KEY_FILE_ENV} does not exist")
        write_private(path, base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SealingError(f"{path}: not a portal key (32 bytes in base64)")
    use_key(key)
    return key


def use_key(key: bytes) -> None:
    global _key
    _key = key


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _current() -> bytes:
    if _key is None:
        raise SealingError("the portal's key is not loaded")
    return _key


def seal_bytes(data: bytes) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = _current()
    nonce = os.urandom(12)
    return f"{PREFIX}{_key_id(key)}:" + base64.b64encode(nonce + AESGCM(key).encrypt(nonce, data, None)).decode()


def open_bytes(value: str) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = _current()
    key_id, _, sealed = value[len(PREFIX):].partition(":")
    if key_id != _key_id(key):
        raise SealingError(f"a value sealed with portal key {key_id}, this portal has key {_key_id(key)}: "
                           f"start it with the key file the others use ({KEY_FILE_ENV})")
    raw = base64.b64decode(sealed)
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], None)
    except InvalidTag:
        raise SealingError("a sealed value was changed in the database") from None


def is_sealed(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX)


class SealedText(TypeDecorator):
    """A text column the database holds sealed; the code reads and writes plain text. A value
    written before sealing began (no prefix) reads as it is, until migration 0010 seals it."""
    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else seal_bytes(value.encode())

    def process_result_value(self, value: str | None, dialect: object) -> str | None:
        return open_bytes(value).decode() if is_sealed(value) else value
