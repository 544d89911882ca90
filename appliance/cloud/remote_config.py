"""Office configs from the portal: checked like `edgepbx check`, installed over the config file
(the old one kept as FILE.previous), then applied by the supervisor when no call is up.

The box writes two small state files under data_dir: `remote-config.json` (the version it last
took from the portal and what became of it) and, from the supervisor, `running-config.json`
(the SHA-256 of the config its services run, and whether a bad one was rolled back).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
from pathlib import Path

from ..cdr import now
from ..config import Config, InvalidConfig, load
from ..files import read_state_json, write_private, write_state_json

REMOTE_STATE = "remote-config.json"
RUNNING_STATE = "running-config.json"
SUPERVISOR_PID_ENV = "EDGEPBX_SUPERVISOR_PID"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def previous_path(config_path: Path) -> Path:
    return config_path.with_name(config_path.name + ".previous")


def check(cfg: Config, version: int, text: str) -> list[str]:
    """The errors that keep this config off the box (empty: it may be installed). Checked beside
    the live file, so relative paths (data_dir, sounds) resolve as they will."""
    staged = cfg.path.with_name(f".{cfg.path.name}.portal-v{version}")
    write_private(staged, text)
    try:
        new = load(staged)
    except InvalidConfig as exc:
        return [str(e).replace(str(staged), f"portal config v{version}") for e in exc.errors]
    finally:
        staged.unlink(missing_ok=True)
    if new.data_dir != cfg.data_dir:
        return [f"portal config v{version}: data_dir may not change from the portal ({new.data_dir} "
                f"instead of {cfg.data_dir}): the box's records and recordings live there"]
    return []


def install(cfg: Config, version: int, text: str) -> None:
    """Replaces the config file (the old one kept as .previous) and asks the supervisor to apply it."""
    shutil.copy2(cfg.path, previous_path(cfg.path))
    write_private(cfg.path, text)
    write_state_json(cfg.data_dir / REMOTE_STATE, {"version": version, "sha256": sha256_text(text), "state": "installed",
                                             "at": now()})
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if supervisor:
        os.kill(int(supervisor), signal.SIGHUP)


def remote_state(cfg: Config) -> dict:
    return read_state_json(cfg.data_dir / REMOTE_STATE)


def set_remote_state(cfg: Config, **values: object) -> None:
    write_state_json(cfg.data_dir / REMOTE_STATE, remote_state(cfg) | values | {"at": now()})


def running_state(cfg: Config) -> dict:
    return read_state_json(cfg.data_dir / RUNNING_STATE)
