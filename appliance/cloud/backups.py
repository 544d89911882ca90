"""The box's backups to the portal, and their restore onto a replacement box (issue 24).

Whenever what makes the box itself changes (the office config, the SIP passwords it generated,
its TLS identity, the phones' provisioning credentials, auto-enrolled phones, the files the
config names), the agent seals a backup (appliance/backup.py) under the site's backup key and
puts it on the portal: within CHECK_SECONDS of the change, and at the first start after
enrolment. A box enrolled with a replacement code on a first-boot config restores the site's
newest backup before it writes its cloud link, so `edgepbx run` starts as the old office.

Cheap when nothing changed: every CHECK_SECONDS the agent compares the files' sizes and times;
only a difference collects and fingerprints their contents, and only a new fingerprint is sent.
"""
from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..backup import DATA_FILES, Contents, named_files, collect, fingerprint, restore, seal, unseal
from ..cdr import now
from ..config import Config, InvalidConfig, load
from ..files import read_state_json, write_state_json
from . import answers
from .answers import BackupOffered
from .client import PortalClient

log = logging.getLogger("edgepbx.cloud")

STATE_FILE = "backup-state.json"
CHECK_SECONDS = 2.0
MAX_BACKUP_BYTES = 16 << 20  # what the portal takes (portal/backups.py)


def _stamp(paths: list[Path]) -> list[tuple[str, int, int]]:
    stamp = []
    for path in paths:
        try:
            st = path.stat()
            stamp.append((str(path), st.st_mtime_ns, st.st_size))
        except OSError:
            stamp.append((str(path), 0, -1))
    return stamp


def counts(cfg: Config, contents: Contents) -> dict[str, int]:
    """What the site's page says a backup holds (the portal cannot read it)."""
    try:
        phones = len(json.loads(contents.data.get("device-credentials.json", b"{}")))
    except ValueError:
        phones = 0
    return {"extensions": len(cfg.extensions), "phones": phones, "files": len(contents.files)}


class BackupKeeper:
    def __init__(self, config_path: Path, data_dir: Path):
        self.config_path = config_path
        self.data_dir = data_dir
        self.stamp: list | None = None  # the files as last looked at
        self.stamp_paths: list[Path] = []
        self.next_check = 0.0
        self.refused = False  # a portal older than backups

    def state(self) -> dict:
        return read_state_json(self.data_dir / STATE_FILE)

    def _watched(self, cfg: Config | None) -> list[Path]:
        named = named_files(cfg) if cfg is not None else []  # an invalid config: the last backup stands
        tls = self.data_dir / "tls"
        return ([self.config_path] + [self.data_dir / name for name in DATA_FILES] +
                (sorted(tls.iterdir()) if tls.is_dir() else []) + named)

    def due(self, monotonic_now: float) -> bool:
        """Something may have changed since the last look (at most every CHECK_SECONDS)."""
        if self.refused or monotonic_now < self.next_check:
            return False
        self.next_check = monotonic_now + CHECK_SECONDS
        if self.stamp is not None and _stamp(self.stamp_paths) == self.stamp:
            return False
        return True

    def send(self, client: PortalClient, key: bytes) -> int | None:
        """Puts a backup on the portal when the contents changed; the backup's id, or None."""
        config_before = _stamp([self.config_path])
        try:
            cfg: Config | None = load(self.config_path)
        except InvalidConfig:
            cfg = None
        self.stamp_paths = self._watched(cfg)
        stamp = _stamp(self.stamp_paths)
        if stamp[0] != config_before[0]:  # edited while it was read: looked at again at the next check
            return None
        if cfg is None:
            self.stamp = stamp
            return None
        contents = collect(cfg)
        printed = fingerprint(contents)
        if printed == self.state().get("fingerprint"):
            self.stamp = stamp
            return None
        blob = seal(contents, key=key)
        if len(blob) > MAX_BACKUP_BYTES:
            log.error("backup of %d KB is over the portal's %d MB: the files the config names are too large; "
                      "the last backup stands", len(blob) >> 10, MAX_BACKUP_BYTES >> 20)
            self.stamp = stamp
            return None
        query = "&".join(f"{k}={v}" for k, v in counts(cfg, contents).items())
        backup_id = answers.backup_stored(client.request("PUT", f"/api/v1/backup?{query}", blob))
        write_state_json(self.data_dir / STATE_FILE, {"fingerprint": printed, "id": backup_id, "at": now()})
        self.stamp = stamp
        log.info("backup %d on the portal (%d KB, encrypted with the site's key)", backup_id, len(blob) >> 10)
        return backup_id


@dataclass(frozen=True)
class Restored:
    config: Config
    network: dict[str, str]  # the dead box's LAN address, gateway and DNS (empty if unknown)


def restore_from_portal(cfg: Config, client: PortalClient, key: str, offered: BackupOffered,
                        say: Callable[[str], None]) -> Restored:
    """Downloads the site's backup, opens it with the site's key and puts it on this box (the
    first-boot config kept as FILE.previous)."""
    say(f"the site's backup of {offered.created_at[:19].replace('T', ' ')} UTC ({offered.size // 1024 + 1} KB): "
        "downloading")
    blob = client.download(f"/api/v1/backups/{offered.id}", MAX_BACKUP_BYTES)
    say("opening it with the site's key")
    contents = unseal(blob, key=base64.b64decode(key))
    say(f"restoring {contents.site or 'the office'} onto this box")
    new = restore(contents, cfg.path)
    # The restored contents are the portal's newest backup: the agent need not send them back.
    write_state_json(new.data_dir / STATE_FILE, {"fingerprint": fingerprint(contents), "id": offered.id, "at": now()})
    return Restored(new, contents.network)
