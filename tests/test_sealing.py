"""Secrets at rest in the portal (portal/sealing.py) and the box's backups under its site's key
(appliance/backup.py): what a copy of the database or a backup file gives away, and what a
portal started with the wrong key file says."""
from __future__ import annotations

import base64
import os

import pytest

from appliance.backup import BackupRefused, Contents, fingerprint, seal, unseal
from portal import sealing


@pytest.fixture
def key(tmp_path, monkeypatch):
    monkeypatch.delenv(sealing.KEY_FILE_ENV, raising=False)
    return sealing.load_key(tmp_path)


def test_a_sealed_value_reads_back_and_holds_nothing_in_clear(key, tmp_path):
    stored = sealing.seal_bytes(b"password: pw-101-secret")
    assert stored.startswith(sealing.PREFIX) and b"pw-101-secret" not in stored.encode()
    assert sealing.seal_bytes(b"password: pw-101-secret") != stored  # a fresh nonce each time
    assert sealing.open_bytes(stored) == b"password: pw-101-secret"
    assert (tmp_path / sealing.KEY_FILE).stat().st_mode & 0o077 == 0
    assert sealing.load_key(tmp_path) == key  # the same file, the same key at the next start


def test_a_portal_with_another_key_or_a_changed_value_says_so(key, tmp_path, monkeypatch):
    stored = sealing.seal_bytes(b"secret")
    sealing.use_key(os.urandom(32))
    with pytest.raises(sealing.SealingError, match="sealed with portal key .* this portal has key"):
        sealing.open_bytes(stored)
    sealing.use_key(key)
    raw = bytearray(base64.b64decode(stored.rsplit(":", 1)[1]))
    raw[-1] ^= 1
    with pytest.raises(sealing.SealingError, match="changed"):
        sealing.open_bytes(stored.rsplit(":", 1)[0] + ":" + base64.b64encode(bytes(raw)).decode())
    monkeypatch.setenv(sealing.KEY_FILE_ENV, str(tmp_path / "absent.key"))
    with pytest.raises(sealing.SealingError, match="does not exist"):
        sealing.load_key(tmp_path)  # a named key file that is missing is not quietly made anew
    (tmp_path / "bad.key").write_text("not a key\n")
    monkeypatch.setenv(sealing.KEY_FILE_ENV, str(tmp_path / "bad.key"))
    with pytest.raises(sealing.SealingError, match="not a portal key"):
        sealing.load_key(tmp_path)


def contents(config: str = "site: {name: x}\n", registry: bytes = b"log 1") -> Contents:
    return Contents(config, {"credentials.json": b'{"101": "pw-101-secret"}', "devices.sqlite": registry},
                    {"config-dir/greeting.wav": b"RIFF"}, "x", "2026-12-03T12:00:00+00:00")


def test_a_backup_under_the_site_key_opens_only_with_it():
    site_key = os.urandom(32)
    blob = seal(contents(), key=site_key)
    assert b"pw-101-secret" not in blob
    assert unseal(blob, key=site_key).data["credentials.json"] == b'{"101": "pw-101-secret"}'
    with pytest.raises(BackupRefused, match="the site's key does not open it"):
        unseal(blob, key=os.urandom(32))
    with pytest.raises(BackupRefused, match="portal's copy"):
        unseal(blob, passphrase="a passphrase of some length")  # an installer given the portal's own copy


def test_only_a_change_worth_a_backup_changes_the_fingerprint():
    assert fingerprint(contents(registry=b"log 1")) == fingerprint(contents(registry=b"log 2"))  # a phone fetched
    assert fingerprint(contents()) != fingerprint(contents(config="site: {name: y}\n"))
