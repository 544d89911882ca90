"""What software the box runs: the release in its booted RAUC slot, the slot, and its board
(RAUC's compatible string). The heartbeat says them; the portal's rollouts go by them."""
from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

RAUC_SYSTEM_CONF = Path("/etc/rauc/system.conf")
# What each slot holds, as the privileged install path wrote it after RAUC installed a bundle
# there: {"B": "1.0.0+3f2a..."}. A slot flashed with the image is not in it (it runs the
# package's version). RAUC's own status (/data/rauc) is root's; this file is readable by the box.
SLOTS_FILE = "update/slots.json"


def booted_software(data_dir: Path, package_version: str, cmdline: Path = Path("/proc/cmdline"),
                    system_conf: Path = RAUC_SYSTEM_CONF) -> dict:
    """The heartbeat's `version`, `slot` and `compatible`: the release installed in the booted
    slot (else the package's version), the slot GRUB or U-Boot booted, and the board RAUC knows.
    Off the image (a development machine) slot and compatible are None: rollouts skip such a box."""
    try:
        slot_match = re.search(r"\brauc\.slot=([A-Za-z0-9]+)", cmdline.read_text())
    except OSError:
        slot_match = None
    slot = slot_match.group(1) if slot_match else None
    compatible = None
    if system_conf.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(system_conf)
            compatible = parser.get("system", "compatible", fallback=None)
        except configparser.Error:
            compatible = None
    version = package_version
    if slot is not None:
        try:
            installed = json.loads((data_dir / SLOTS_FILE).read_text())
            version = str(installed.get(slot) or package_version) if isinstance(installed, dict) else package_version
        except (OSError, ValueError):
            pass
    return {"version": version, "slot": slot, "compatible": compatible}
