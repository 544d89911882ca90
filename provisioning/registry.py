"""Known phones (from the office config), their per-device secrets, and what each has fetched.

Devices come from `extensions[].phone` in the config. Per-device secrets that the config does not
hold (the phone's admin password and its HTTP provisioning password) are generated once and kept
in data_dir/device-credentials.json (0600). Every config fetch and every discovery lands in
data_dir/devices.sqlite so `edgepbx devices` can show what each phone did last.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass

from appliance.cdr import now
from appliance.config import Config, Extension, Phone
from appliance.files import write_private_json

log = logging.getLogger("edgepbx.provisioning")
ENROL_INTERVAL = 30.0  # seconds between two auto-enrolments: a flood of fake MACs takes no extensions

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


def _device_secrets(cfg: Config, extra_macs: list[str] = ()) -> dict[str, dict[str, str]]:
    path = cfg.data_dir / "device-credentials.json"
    stored: dict[str, dict[str, str]] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for mac in [e.phone.mac for e in cfg.extensions if e.phone] + list(extra_macs):
        if mac not in stored:
            stored[mac] = {"admin": secrets.token_urlsafe(9), "http": secrets.token_urlsafe(12)}
            changed = True
    if changed:
        write_private_json(path, stored)
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
        self.enrol_lock = threading.Lock()
        self.last_enrolment = 0.0
        self.enrolled_path = cfg.data_dir / "enrolled.json"
        for mac, entry in self._enrolled().items():
            ext = cfg.extension(entry["extension"])
            if ext is not None and ext.phone is None and mac not in self.devices:
                self._add_enrolled(mac, ext, entry["vendor"], entry["model"])

    def _enrolled(self) -> dict[str, dict[str, str]]:
        return json.loads(self.enrolled_path.read_text()) if self.enrolled_path.exists() else {}

    def _add_enrolled(self, mac: str, ext: Extension, vendor: str, model: str) -> Device:
        secrets_ = _device_secrets(self.cfg, extra_macs=[mac])[mac]
        device = Device(Phone(mac=mac, vendor=vendor, model=model, keys=None, line=0), ext,
                        secrets_["admin"], secrets_["http"])
        self.devices[mac] = device
        return device

    def enrol(self, mac: str, vendor: str, model: str, client: str, lan) -> Device | None:
        """Auto-enrolment (provisioning.auto_enrol, off by default): an unknown phone on the office
        LAN gets the next extension that has no phone, at most one every ENROL_INTERVAL seconds."""
        if not self.cfg.provisioning.auto_enrol:
            return None
        try:
            if ipaddress.ip_address(client) not in lan:
                return None
        except ValueError:
            return None
        with self.enrol_lock:
            if mac in self.devices:
                return self.devices[mac]
            if time.monotonic() - self.last_enrolment < ENROL_INTERVAL:
                log.warning("provisioning: not enrolling %s from %s yet (one phone every %.0f s)", mac, client,
                            ENROL_INTERVAL)
                return None
            taken = {d.extension.number for d in self.devices.values()}
            free = next((e for e in self.cfg.extensions if e.phone is None and e.number not in taken), None)
            if free is None:
                log.warning("provisioning: %s from %s wants a config, but every extension has a phone", mac, client)
                return None
            enrolled = self._enrolled()
            enrolled[mac] = {"extension": free.number, "vendor": vendor, "model": model}
            write_private_json(self.enrolled_path, enrolled)
            self.last_enrolment = time.monotonic()
            log.warning("provisioning: auto-enrolled %s %s %s (%s) as extension %s", vendor, model, mac, client,
                        free.number)
            return self._add_enrolled(mac, free, vendor, model)

    def by_mac(self, mac: str) -> Device | None:
        return self.devices.get(mac)

    def record_fetch(self, mac: str | None, protocol: str, file: str, client: str, status: str,
                     user_agent: str | None = None) -> None:
        try:
            self.db.execute("INSERT INTO fetches VALUES (?,?,?,?,?,?,?)",
                            (mac, now(), protocol, file, client, user_agent, status))
        except sqlite3.Error:
            pass  # the fetch log is diagnostics; serving the phone matters more

    def last_user_agent(self, mac: str) -> str | None:
        """The User-Agent of the phone's latest fetch that sent one (TFTP sends none): what firmware
        it ran when it last said."""
        try:
            row = self.db.execute("SELECT user_agent FROM fetches WHERE mac = ? AND user_agent IS NOT NULL "
                                  "ORDER BY at DESC LIMIT 1", (mac,)).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def record_discovery(self, mac: str, ip: str | None, vendor: str | None, vendor_class: str | None) -> None:
        stamp = now()
        self.db.execute(
            "INSERT INTO discovered VALUES (?,?,?,?,?,?) ON CONFLICT(mac) DO UPDATE SET "
            "ip=coalesce(excluded.ip, ip), vendor=coalesce(excluded.vendor, vendor), "
            "vendor_class=coalesce(excluded.vendor_class, vendor_class), last_seen=excluded.last_seen",
            (mac, ip, vendor, vendor_class, stamp, stamp))
