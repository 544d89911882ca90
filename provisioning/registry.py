"""Known phones (from the office config), their per-device secrets, and what each has fetched.

Devices come from `extensions[].phone` in the config. Per-device secrets that the config does not
hold (the phone's admin password and its HTTP provisioning password) are generated once and kept
in data_dir/device-credentials.json (0600). Every config fetch and every discovery lands in
data_dir/devices.sqlite so `edgepbx devices` can show what each phone did last.
"""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from appliance.cdr import now
from appliance.config import Config, Extension, Phone

SCHEMA = """
CREATE TABLE IF NOT EXISTS fetches (
    mac TEXT, at TEXT NOT NULL, protocol TEXT NOT NULL, file TEXT NOT NULL, client TEXT, user_agent TEXT, status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fetches_mac ON fetches(mac, at);
CREATE TABLE IF NOT EXISTS discovered (
    mac TEXT PRIMARY KEY, ip TEXT, vendor TEXT, vendor_class TEXT, first_seen TEXT, last_seen TEXT
);
"""


@dataclass(frozen=True)
class Device:
    phone: Phone
    extension: Extension
    admin_password: str
    http_password: str

    @property
    def mac(self) -> str:
        return self.phone.mac


def _device_secrets(cfg: Config) -> dict[str, dict[str, str]]:
    path = cfg.data_dir / "device-credentials.json"
    stored: dict[str, dict[str, str]] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for ext in cfg.extensions:
        if ext.phone and ext.phone.mac not in stored:
            stored[ext.phone.mac] = {"admin": secrets.token_urlsafe(9), "http": secrets.token_urlsafe(12)}
            changed = True
    if changed:
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(stored, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    return stored


class Registry:
    def __init__(self, cfg: Config, passwords: dict[str, str]):
        self.cfg = cfg
        self.passwords = passwords
        device_secrets = _device_secrets(cfg)
        self.devices: dict[str, Device] = {}
        for ext in cfg.extensions:
            if ext.phone:
                s = device_secrets[ext.phone.mac]
                self.devices[ext.phone.mac] = Device(ext.phone, ext, s["admin"], s["http"])
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = cfg.data_dir / "devices.sqlite"
        self.db = sqlite3.connect(str(self.db_path), timeout=5.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def by_mac(self, mac: str) -> Device | None:
        return self.devices.get(mac)

    def record_fetch(self, mac: str | None, protocol: str, file: str, client: str, status: str,
                     user_agent: str | None = None) -> None:
        try:
            self.db.execute("INSERT INTO fetches VALUES (?,?,?,?,?,?,?)",
                            (mac, now(), protocol, file, client, user_agent, status))
        except sqlite3.Error:
            pass  # the fetch log is diagnostics; serving the phone matters more

    def record_discovery(self, mac: str, ip: str | None, vendor: str | None, vendor_class: str | None) -> None:
        stamp = now()
        self.db.execute(
            "INSERT INTO discovered VALUES (?,?,?,?,?,?) ON CONFLICT(mac) DO UPDATE SET "
            "ip=coalesce(excluded.ip, ip), vendor=coalesce(excluded.vendor, vendor), "
            "vendor_class=coalesce(excluded.vendor_class, vendor_class), last_seen=excluded.last_seen",
            (mac, ip, vendor, vendor_class, stamp, stamp))
