"""What the box reports about itself: the heartbeat it sends and the cloud state `edgepbx status` shows."""
from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

from ..config import Config
from ..featureserver.limits import recent_toll_alarm
from ..files import read_state_json, write_state_json
from ..trunk_state import trunk_states
from ..slots import booted_software

STATE_FILE = "cloud-state.json"


def software_version() -> str:
    try:
        from importlib.metadata import version
        return version("edgepbx")
    except Exception:  # noqa: BLE001 - a checkout without an installed package
        return "unknown"


def _memory() -> dict:
    info = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            name, value = line.split(":", 1)
            if name in ("MemTotal", "MemAvailable"):
                info[name] = int(value.split()[0]) * 1024
    return {"total_bytes": info.get("MemTotal"), "available_bytes": info.get("MemAvailable")}


def registered_phones(cfg: Config) -> int:
    path = cfg.data_dir / "registrations.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        return db.execute("SELECT count(DISTINCT extension) FROM registrations WHERE expires_at > ?",
                          (time.time(),)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def collect_status(cfg: Config, outbox: dict, agent_uptime: float) -> dict:
    disk = shutil.disk_usage(cfg.data_dir)
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    return {
        **booted_software(cfg.data_dir, software_version()), "uptime_seconds": round(uptime), "agent_uptime_seconds": round(agent_uptime),
        "disk": {"total_bytes": disk.total, "free_bytes": disk.free}, "memory": _memory(),
        "trunks": [{"name": t["name"], "state": t["state"], "last_code": t["last_code"]} for t in trunk_states(cfg)],
        "phones_registered": registered_phones(cfg), "extensions": len(cfg.extensions),
        "outbox_depth": outbox["cdr"] + outbox["recording"], "outbox": outbox,
        "heartbeat_seconds": cfg.cloud.heartbeat_seconds, "toll_alarm": recent_toll_alarm(cfg.data_dir),
    }


def write_state(data_dir: Path, state: dict) -> None:
    write_state_json(data_dir / STATE_FILE, state)


def cloud_status(cfg: Config) -> dict:
    """For `edgepbx status`: enrolled or not, last successful sync, outbox depth, last error."""
    from .link import load_link
    from .outbox import Outbox

    link = load_link(cfg.data_dir)
    state = read_state_json(cfg.data_dir / STATE_FILE)
    depth = {"cdr": 0, "recording": 0, "rejected": 0}
    if (cfg.data_dir / "cdr.sqlite").exists():
        outbox = Outbox(cfg.data_dir / "cdr.sqlite")
        depth = outbox.depth()
        outbox.close()
    from .remote_config import remote_state

    remote = remote_state(cfg)
    return {"enrolled": link is not None, "site": link.site if link else None,
            "config": {k: remote.get(k) for k in ("version", "state", "errors", "at")} if remote else None,
            "portal_url": link.portal_url if link else None, "last_sync_at": state.get("last_sync_at"),
            "last_error": state.get("last_error"), "last_error_at": state.get("last_error_at"), "outbox": depth}
