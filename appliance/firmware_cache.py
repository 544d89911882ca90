"""The phone firmware the portal pinned for this site, as the box keeps it (issue 27):
DATA_DIR/firmware-cache/ holds the files and `pins.json` names, per vendor and model, the one
each phone of that model should run. The cloud agent fills it (appliance/cloud/firmware.py);
provisioning serves its files at /firmware/NAME over HTTP and TFTP and points the templates'
firmware keys at them. It is on the data partition, so it survives a reboot and an update."""
from __future__ import annotations

import json
from pathlib import Path

CACHE_DIR = "firmware-cache"
PINS_FILE = "pins.json"


def cache_dir(data_dir: Path) -> Path:
    return data_dir / CACHE_DIR


def pinned(data_dir: Path) -> dict[str, dict]:
    """{"yealink/T46U": {"version", "file", "sha256", "size"}} for the files in the cache."""
    try:
        pins = json.loads((cache_dir(data_dir) / PINS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {key: pin for key, pin in pins.items() if isinstance(pin, dict) and (cache_dir(data_dir) / str(pin.get("file"))).is_file()}


def cached_file(data_dir: Path, name: str) -> Path | None:
    """A pinned file by the name the phones are told (never a path, never the pins file)."""
    if "/" in name or name.startswith(".") or name == PINS_FILE:
        return None
    return next((cache_dir(data_dir) / name for pin in pinned(data_dir).values() if pin.get("file") == name), None)


UPGRADES_FILE = "upgrades.json"


def upgrades(data_dir: Path) -> dict:
    """The phones' upgrades (appliance/cloud/upgrades.py): {"phones": {mac: {"target", "state",
    "since"}}, "halted": {...} or None}."""
    try:
        state = json.loads((cache_dir(data_dir) / UPGRADES_FILE).read_text())
    except (OSError, ValueError):
        return {"phones": {}, "halted": None}
    return state if isinstance(state, dict) and isinstance(state.get("phones"), dict) else {"phones": {}, "halted": None}


def may_upgrade(data_dir: Path, mac: str, version: str) -> bool:
    """Whether the phone is told of the pinned `version` now: its wave came (or it runs it)."""
    phone = upgrades(data_dir)["phones"].get(mac) or {}
    return phone.get("target") == version and phone.get("state") in ("upgrading", "done")
