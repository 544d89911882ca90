"""Space kept on the data partition for call records, whatever fills the rest.

Recordings stop well before the disk is full (recording.min_free_mb), but something else can
still fill it: a log, an update download, a file copied by hand. A call record must be written
even then, so the box keeps a file of RESERVE_MB that only the record store gives back: when a
record write finds the disk full, the file goes and the write is tried again (appliance/cdr.py).
The cloud agent makes the file again once there is room (appliance/cloud/agent.py)."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

RESERVE_NAME = "space-kept-for-call-records"
RESERVE_MB = 8  # a record and its outbox entry take about 1 KB: thousands of calls' worth

log = logging.getLogger(__name__)


def reserve_path(data_dir: Path) -> Path:
    return data_dir / RESERVE_NAME


def keep_reserve(data_dir: Path) -> bool:
    """Makes the reserve file if it is missing and the disk has room for it twice over; True if
    it is there afterwards. Allocated (not a sparse file), so its space is really taken."""
    path = reserve_path(data_dir)
    if path.exists():
        return True
    try:
        if shutil.disk_usage(data_dir).free < 2 * RESERVE_MB << 20:
            return False
        tmp = path.with_name(path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_MB << 20)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return True
    except OSError as exc:
        log.warning("could not keep %d MB for call records on %s: %s", RESERVE_MB, data_dir, exc)
        return False


def release_reserve(data_dir: Path) -> bool:
    """Gives the reserve's space back to the records; False if there was none to give."""
    try:
        os.unlink(reserve_path(data_dir))
    except FileNotFoundError:
        return False
    log.error("ALARM disk full on %s: released the %d MB kept for call records", data_dir, RESERVE_MB)
    return True
