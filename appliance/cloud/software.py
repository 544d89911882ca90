"""The box's side of a box software rollout (portal/rollouts.py): the release the portal offers in
a heartbeat's answer is fetched a chunk per agent round into DATA_DIR/update/ (resumed after a
restart, bounded by the data partition's room beside the recordings' reserve, checked against its
SHA-256), then installed inside the rollout's window (the office's clock) when no call is up.

The agent runs unprivileged and never installs itself: it asks through a request file that a
root systemd unit on the image watches (image/overlay: edgepbx-install.path runs
/usr/local/sbin/edgepbx-install), which installs exactly DATA_DIR/update/pending.raucb with RAUC
(its signature and payload checked against the image's keyring) and reboots, or writes why it
failed. After the reboot the booted slot's release says whether the update took; a slot that
failed its self-test was rolled back by edgepbx-boot-check, and the box says so.

The state survives restarts in DATA_DIR/update/rollout.json; the heartbeat carries it as
`update`: {version, state (downloading, ready, installing, failed), detail}."""
from __future__ import annotations

import json
import logging
import shutil
import time
from datetime import datetime

from ..cdr import open_call_count
from ..config import Config
from ..files import read_state_json, write_private_json
from .answers import ReleaseOffer
from .client import PortalClient
from .fetch import next_chunk, whole
from .upgrades import in_window

log = logging.getLogger("edgepbx.cloud")

UPDATE_DIR = "update"
STATE_FILE = "rollout.json"
BUNDLE = "pending.raucb"
REQUEST = "install-request"  # what the root unit watches
RESULT = "install-result.json"  # what it writes when RAUC refused the bundle


class SoftwareUpdater:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.folder = cfg.data_dir / UPDATE_DIR
        self.offer: ReleaseOffer | None = None

    @property
    def state(self) -> dict:
        return read_state_json(self.folder / STATE_FILE)

    def _save(self, state: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_private_json(self.folder / STATE_FILE, state)

    def _forget(self) -> None:
        for name in (STATE_FILE, BUNDLE, BUNDLE + ".part", REQUEST, RESULT):
            (self.folder / name).unlink(missing_ok=True)

    def report(self, running_version: str) -> dict | None:
        """What the heartbeat says; first, what a reboot or the root unit decided."""
        state = self.state
        if not state:
            return None
        if state.get("state") == "installing":
            result = read_state_json(self.folder / RESULT)
            if running_version == state["version"]:
                log.info("box software %s installed and confirmed", state["version"])
                self._forget()
                return None
            if result:
                state = {**state, "state": "failed", "detail": str(result.get("detail") or "RAUC refused the bundle")[:500]}
            elif self._rebooted_since(state):
                state = {**state, "state": "failed",
                         "detail": f"back on {running_version} after the reboot: the new slot failed its self-test"}
            if state["state"] == "failed":
                log.error("box software %s: %s", state["version"], state["detail"])
                self._save(state)
                for name in (BUNDLE, REQUEST, RESULT):
                    (self.folder / name).unlink(missing_ok=True)
        return {"version": state["version"], "state": state["state"], "detail": state.get("detail", "")}

    @staticmethod
    def _rebooted_since(state: dict) -> bool:
        with open("/proc/uptime") as fh:
            return time.time() - float(fh.read().split()[0]) > state.get("asked_at", 0)

    def follow(self, offer: ReleaseOffer | None) -> None:
        """The heartbeat's answer: a new offer starts a download; no offer (paused, halted,
        aborted, or done) stops one not yet installing, and ends a reported failure."""
        self.offer = offer
        state = self.state
        if state and state.get("state") != "installing" and (offer is None or offer.version != state.get("version")):
            self._forget()
            state = {}
        if offer is not None and not state:
            self._save({"version": offer.version, "sha256": offer.sha256, "size": offer.size, "state": "downloading"})

    def step(self, client: PortalClient) -> bool:
        """The next chunk of an offered release; True if it fetched one."""
        state, offer = self.state, self.offer
        if offer is None or state.get("state") != "downloading" or state.get("version") != offer.version:
            return False
        part = self.folder / (BUNDLE + ".part")
        room = shutil.disk_usage(self.folder).free - (self.cfg.recording_min_free_mb << 20)
        have = part.stat().st_size if part.exists() else 0
        if offer.size - have > room:
            self._save({**state, "state": "failed", "detail": f"the bundle ({offer.size >> 20} MB) does not fit: "
                                                              f"{max(room, 0) >> 20} MB free beyond the recordings' reserve"})
            part.unlink(missing_ok=True)
            return False
        if next_chunk(client, f"/api/v1/releases/{offer.sha256}", part, offer.size):
            if whole(part, offer.sha256, offer.size):
                part.rename(self.folder / BUNDLE)
                self._save({**state, "state": "ready"})
                log.info("box software %s fetched (%d MB); installing inside %s with no call up",
                         offer.version, offer.size >> 20, offer.window or "any time")
            else:
                log.error("box software %s arrived damaged (not its SHA-256); fetching it again", offer.version)
                part.unlink()
        return True

    def due(self, now: datetime) -> bool:
        """A fetched release may be installed now: the portal still offers it, the rollout's
        window is open (the office's clock) and no call is up."""
        state, offer = self.state, self.offer
        if offer is None or state.get("state") != "ready" or state.get("version") != offer.version:
            return False
        if offer.window and not in_window(offer.window, now):
            return False
        return not open_call_count(self.cfg.data_dir / "cdr.sqlite")

    def mark_installing(self) -> None:
        """Said in a heartbeat before the root unit is asked: the portal learns "installing"
        before the box goes away."""
        self._save({**self.state, "state": "installing", "asked_at": time.time()})
        (self.folder / RESULT).unlink(missing_ok=True)

    def mark_ready(self) -> None:
        self._save({**self.state, "state": "ready"})

    def ask_system(self) -> None:
        (self.folder / REQUEST).write_text(json.dumps({"version": self.state.get("version")}) + "\n")
        log.info("box software %s: asked the system to install it and reboot", self.state.get("version"))
