"""Enrolment codes and site credentials: random, shown once, stored only as SHA-256 hashes.

Both carry at least 80 random bits, so a plain hash (not a slow password hash) is enough: there
is nothing to guess from a leaked table.
"""
from __future__ import annotations

import hashlib
import secrets

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: an installer types it from paper
CREDENTIAL_PREFIX = "epbx_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_enrolment_code() -> str:
    """16 symbols of 32 (80 bits) in groups of four: XXXX-XXXX-XXXX-XXXX."""
    symbols = "".join(secrets.choice(CODE_ALPHABET) for _ in range(16))
    return "-".join(symbols[i:i + 4] for i in range(0, 16, 4))


def normalise_code(code: str) -> str:
    """What the installer typed, forgiving case, spaces and missing dashes."""
    symbols = "".join(ch for ch in code.upper() if ch.isalnum())
    return "-".join(symbols[i:i + 4] for i in range(0, len(symbols), 4))


def new_credential() -> str:
    return CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
