"""Where call recordings live, and their recovery after a crash or power loss."""
from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

from . import wavfix
from .cdr import CdrStore

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
