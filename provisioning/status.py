"""What `edgepbx devices` shows: configured and discovered phones, last fetch, registration, and
every extension registered now without a provisioned phone (a softphone, a phone set up by hand):
registered from which address, since when, by which user agent."""
from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime

from appliance.config import Config

from .catalog import catalog, vendor_by_oui


def _query(path, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # table not created yet
        return []
    finally:
        db.close()


def registration(reg: sqlite3.Row | None, now: float) -> dict:
    """An extension's registration as the edge noted it, or not registered."""
    if reg is None or reg["expires_at"] <= now:
        return {"registered": False, "registered_from": None, "registered_since": None}
    since = datetime.fromtimestamp(reg["registered_at"]).astimezone().isoformat(timespec="seconds")
    return {"registered": True, "registered_from": reg["source"], "registered_since": since}


def firmware(vendor_name: str | None, *user_agents: str | None) -> str | None:
    """The firmware version the phone last reported (its SIP or HTTP User-Agent)."""
    vendor = catalog().get(vendor_name) if vendor_name else None
    reported = next((found for agent in user_agents if vendor and (found := vendor.firmware_in(agent))), None)
    return reported[0] if reported else None


def device_rows(cfg: Config) -> list[dict]:
    devices_db, reg_db = cfg.data_dir / "devices.sqlite", cfg.data_dir / "registrations.sqlite"
    registrations = {r["extension"]: r for r in _query(reg_db, "SELECT * FROM registrations")}
    last_fetch = {r["mac"]: r for r in _query(
        devices_db, "SELECT mac, max(at) AS at, protocol, file, user_agent FROM fetches "
                    "WHERE mac IS NOT NULL AND status='served' GROUP BY mac")}
    discovered = {r["mac"]: r for r in _query(devices_db, "SELECT * FROM discovered")}
    said = {r["mac"]: r["user_agent"] for r in _query(  # TFTP fetches carry no User-Agent: the last that did
        devices_db, "SELECT mac, user_agent, max(at) FROM fetches WHERE mac IS NOT NULL AND user_agent IS NOT NULL "
                    "GROUP BY mac")}
    rows = []
    now = time.time()
    for ext in cfg.extensions:
        if not ext.phone:
            continue
        mac = ext.phone.mac
        reg, fetch, seen = registrations.get(ext.number), last_fetch.get(mac), discovered.get(mac)
        rows.append({
            "mac": mac, "vendor": ext.phone.vendor, "model": ext.phone.model, "extension": ext.number,
            "configured": True, "ip": seen["ip"] if seen else None,
            "last_fetch": {"at": fetch["at"], "protocol": fetch["protocol"], "file": fetch["file"]} if fetch else None,
            **registration(reg, now),
            "user_agent": (reg["user_agent"] if reg else None) or (fetch["user_agent"] if fetch else None),
            "firmware": firmware(ext.phone.vendor, reg["user_agent"] if reg else None, said.get(mac)),
        })
    enrolled_path = cfg.data_dir / "enrolled.json"
    enrolled = json.loads(enrolled_path.read_text()) if enrolled_path.exists() else {}
    for mac, entry in enrolled.items():
        reg, fetch = registrations.get(entry["extension"]), last_fetch.get(mac)
        rows.append({"mac": mac, "vendor": entry["vendor"], "model": entry["model"], "extension": entry["extension"],
                     "configured": False, "enrolled": True, "ip": discovered[mac]["ip"] if mac in discovered else None,
                     "last_fetch": {"at": fetch["at"], "protocol": fetch["protocol"], "file": fetch["file"]} if fetch else None,
                     **registration(reg, now),
                     "user_agent": (reg["user_agent"] if reg else None) or (fetch["user_agent"] if fetch else None),
                     "firmware": firmware(entry["vendor"], reg["user_agent"] if reg else None, said.get(mac))})
    listed = {r["extension"] for r in rows}
    for ext in cfg.extensions:  # registered without a phone the box provisions
        reg = registrations.get(ext.number)
        if ext.number not in listed and reg is not None and reg["expires_at"] > now:
            rows.append({"mac": None, "vendor": None, "model": None, "extension": ext.number, "configured": False,
                         "ip": reg["source"].rsplit(":", 1)[0], "last_fetch": None, **registration(reg, now),
                         "user_agent": reg["user_agent"]})
    for mac, seen in discovered.items():
        if any(r["mac"] == mac for r in rows):
            continue
        vendor = seen["vendor"] or (v.name if (v := vendor_by_oui(mac)) else None)
        rows.append({"mac": mac, "vendor": vendor, "model": None, "extension": None, "configured": False,
                     "ip": seen["ip"], "last_fetch": None, **registration(None, now), "user_agent": None,
                     "vendor_class": seen["vendor_class"]})
    return rows
