"""Fetching the phone firmware the portal pins for this site into the box's cache
(appliance/firmware_cache.py): one CHUNK per round of the agent, so call records and heartbeats
keep flowing while a large file arrives; resumed from the bytes already there after a restart
or an outage; checked against its SHA-256 before phones are told of it; files no longer pinned
are deleted. The cache is bounded (MAX_CACHE_BYTES, and room left on the data partition)."""
from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from ..files import write_private_json
from ..firmware_cache import PINS_FILE, UPGRADES_FILE, cache_dir
from .answers import FirmwarePin
from .client import PortalClient
from .fetch import next_chunk, whole

log = logging.getLogger("edgepbx.cloud")

MAX_CACHE_BYTES = 2 << 30
KEEP_FREE_BYTES = 256 << 20  # call records and recordings come first


def file_name(pin: FirmwarePin) -> str:
    """The name phones are told: vendor, model and version, with the uploaded file's extension."""
    suffix = Path(pin.filename).suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", Path(pin.filename).suffix) else ".bin"
    return re.sub(r"[^A-Za-z0-9._+-]", "_", f"{pin.vendor}-{pin.model}-{pin.version}") + suffix


class FirmwareFetcher:
    def __init__(self, data_dir: Path):
        self.folder = cache_dir(data_dir)
        self.wanted: list[FirmwarePin] = []
        self.refused: set[str] = set()  # sha256s that do not fit, said once
        self._written: dict | None = None  # what pins.json holds, as this process last wrote it

    def want(self, pins: list[FirmwarePin]) -> None:
        """The portal's pins from a heartbeat: what is no longer pinned leaves the box now."""
        self.wanted = pins
        self.folder.mkdir(parents=True, exist_ok=True)
        keep = {file_name(p) for p in pins} | {file_name(p) + ".part" for p in pins} | {PINS_FILE, UPGRADES_FILE}
        for path in self.folder.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)
                log.info("firmware %s is no longer pinned: deleted", path.name)
        self._write_pins()

    def _write_pins(self) -> None:
        done = {f"{p.vendor}/{p.model}": {"version": p.version, "file": file_name(p), "sha256": p.sha256, "size": p.size,
                                          "pinned_at": p.pinned_at}
                for p in self.wanted if (self.folder / file_name(p)).is_file()}
        if done != self._written:  # every heartbeat passes here; the flash is written only on a change
            write_private_json(self.folder / PINS_FILE, done)
            self._written = done

    def step(self, client: PortalClient) -> bool:
        """Fetches the next chunk of the first pinned file not yet here; True if it did."""
        for pin in self.wanted:
            final = self.folder / file_name(pin)
            if final.is_file() or pin.sha256 in self.refused:
                continue
            if not self._fits(pin):
                continue
            part = final.with_name(final.name + ".part")
            if next_chunk(client, f"/api/v1/firmware/{pin.sha256}", part, pin.size):
                self._finish(pin, part, final)
            return True
        return False

    def _fits(self, pin: FirmwarePin) -> bool:
        total = sum(p.size for p in self.wanted)
        free = shutil.disk_usage(self.folder).free
        if total <= MAX_CACHE_BYTES and free - pin.size > KEEP_FREE_BYTES:
            return True
        log.error("firmware %s %s %s (%d MB) not fetched: the pinned files need %d MB of at most %d MB, %d MB free",
                  pin.vendor, pin.model, pin.version, pin.size >> 20, total >> 20, MAX_CACHE_BYTES >> 20, free >> 20)
        self.refused.add(pin.sha256)
        return False

    def _finish(self, pin: FirmwarePin, part: Path, final: Path) -> None:
        if not whole(part, pin.sha256, pin.size):
            log.error("firmware %s arrived damaged (not its SHA-256); fetching it again", final.name)
            part.unlink()
            return
        os.replace(part, final)
        self._write_pins()
        log.info("firmware %s %s %s cached (%d KB); phones of that model are pointed at it",
                 pin.vendor, pin.model, pin.version, pin.size >> 10)
