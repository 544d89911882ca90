"""Where call recordings live, their recovery after a crash or power loss, and when they leave
the box (only once the portal holds them, or never if it does not)."""
from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from . import wavfix
from .cdr import CdrStore, now
from .config import Config

MB = 1 << 20
UNCLOSED_GRACE_SECONDS = 60  # a recording still open this long after its call ended lost its writer
LOW_WATER_FACTOR = 1.25  # pruning for space frees up to this times recording.min_free_mb, not just past it

log = logging.getLogger(__name__)


def recording_path(data_dir: Path, cdr_id: str, src: str, dst: str, when: datetime | None = None) -> Path:
    """data_dir/recordings/YYYY/MM/DD/HHMMSS_src_dst_<id>.wav: sortable and easy to find by hand."""
    when = when or datetime.now()
    safe = lambda s: "".join(ch for ch in s if ch.isalnum() or ch in "+-") or "unknown"  # noqa: E731
    folder = data_dir / "recordings" / when.strftime("%Y/%m/%d")
    return folder / f"{when.strftime('%H%M%S')}_{safe(src)}_{safe(dst)}_{cdr_id}.wav"


def recover_after_crash(store: CdrStore) -> int:
    """Closes CDRs left open by a crash and repairs their WAV headers; returns how many."""
    last_alive: dict[str, str] = {}
    for cdr_id, path in store.open_recordings():
        try:
            mtime = os.stat(path).st_mtime
            last_alive[cdr_id] = datetime.fromtimestamp(mtime).astimezone().isoformat(timespec="milliseconds")
        except OSError:
            pass
    orphans = store.close_orphans(last_alive)
    for orphan in orphans:
        if not orphan.recording:
            continue
        try:
            if wavfix.repair(Path(orphan.recording)):
                log.warning("repaired recording %s of call %s cut by a crash", orphan.recording, orphan.id)
        except (OSError, ValueError) as exc:
            log.error("recording %s of call %s could not be repaired: %s", orphan.recording, orphan.id, exc)
    if orphans:
        log.warning("closed %d call record(s) left open by a crash as failed", len(orphans))
    return len(orphans)


def finished_writing(path: Path, ended_at: str | None) -> bool:
    """True once the feature server closed the call's WAV (a media tick after the call ends), or,
    when it is still open a minute after the call ended, once its header was repaired: its writer
    is gone. An Opus file is written whole."""
    if path.suffix != ".wav" or wavfix.is_closed(path):
        return True
    if _seconds_since(ended_at) < UNCLOSED_GRACE_SECONDS:
        return False
    wavfix.repair(path)
    log.warning("repaired recording %s left open by its writer", path)
    return True


def _seconds_since(moment: str | None) -> float:
    if not moment:
        return 0.0
    return (datetime.now().astimezone() - datetime.fromisoformat(moment)).total_seconds()


def free_mb(cfg: Config) -> float:
    return shutil.disk_usage(cfg.data_dir).free / MB


_last_refusal_alarm = 0.0


def room_to_record(cfg: Config) -> bool:
    """False (with an alarm in the log, at most once a minute) when free space is below
    recording.min_free_mb: the call goes on unrecorded and its CDR still has room."""
    global _last_refusal_alarm
    free = free_mb(cfg)
    if free >= cfg.recording_min_free_mb:
        return True
    if time.monotonic() - _last_refusal_alarm > 60:
        _last_refusal_alarm = time.monotonic()
        log.error("ALARM disk low: %.0f MB free on %s, below recording.min_free_mb %d; calls are not recorded "
                  "until space is freed (synced recordings are pruned first)", free, cfg.data_dir, cfg.recording_min_free_mb)
    return False


def low_on_space(cfg: Config) -> bool:
    return free_mb(cfg) < cfg.recording_min_free_mb * LOW_WATER_FACTOR


@dataclass
class Pruned:
    by_age: int = 0
    for_space: int = 0
    still_low: bool = False


def prune(cfg: Config, enrolled: bool) -> Pruned:
    """Deletes recordings the box no longer needs, oldest first: synced ones past
    recording.keep_days, then, while free space is under the low-water mark, synced ones of any
    age. A recording the portal has not acknowledged is never deleted, unless the box has no
    portal at all (not enrolled): then keep_days applies to every recording."""
    result = Pruned()
    db = sqlite3.connect(str(cfg.data_dir / "cdr.sqlite"), timeout=10.0, isolation_level=None)
    try:
        cutoff = (datetime.now().astimezone() - timedelta(days=cfg.recording_keep_days)).isoformat(timespec="milliseconds")
        deletable = "recording_synced_at IS NOT NULL" if enrolled else "1"
        rows = db.execute(f"SELECT id, recording, started_at FROM cdr WHERE recording IS NOT NULL AND ended_at IS NOT NULL "
                          f"AND recording_pruned_at IS NULL AND {deletable} ORDER BY julianday(started_at), rowid").fetchall()
        for cdr_id, path, started_at in rows:
            old = datetime.fromisoformat(started_at) < datetime.fromisoformat(cutoff)
            short = low_on_space(cfg)
            if not old and not short:
                break  # rows are oldest first: the rest are younger and there is room
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("could not delete recording %s: %s", path, exc)
                continue
            db.execute("UPDATE cdr SET recording_pruned_at = ? WHERE id = ?", (now(), cdr_id))
            if old:
                result.by_age += 1
            else:
                result.for_space += 1
        result.still_low = free_mb(cfg) < cfg.recording_min_free_mb
    finally:
        db.close()
    if result.by_age or result.for_space:
        log.info("pruned %d recording(s) past recording.keep_days and %d for space (all %s)", result.by_age,
                 result.for_space, "synced to the portal" if enrolled else "kept their days; no portal enrolled")
    return result
