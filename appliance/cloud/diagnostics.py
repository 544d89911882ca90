"""An operator's remote diagnostics (issue 27), as the agent runs them: `edgepbx capture` in its
own process (the agent keeps beating and syncing meanwhile), then the pcap, the box's status and
its services' recent log lines put on the portal, and the files deleted from the box."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import Config

LOG_DIR_ENV = "EDGEPBX_LOG_DIR"  # set by the supervisor: where each service's output goes
LOG_LINES = 300


@dataclass
class CaptureJob:
    id: int
    seconds: int
    pcap: Path
    proc: subprocess.Popen
    result: tuple[bool, int | None, str] | None = None  # once finished (a failed upload is tried again)


def start(cfg: Config, capture_id: int, seconds: int) -> CaptureJob:
    folder = cfg.data_dir / "captures"
    folder.mkdir(parents=True, exist_ok=True)
    pcap = folder / f"capture-{capture_id}.pcap"
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "capture", "--config", str(cfg.path), "--seconds",
                             str(seconds), "--output", str(pcap), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return CaptureJob(capture_id, seconds, pcap, proc)


def outcome(job: CaptureJob) -> tuple[bool, int | None, str]:
    """(captured, packets, what to tell the operator) of a finished capture."""
    if job.result is None:
        job.result = _outcome(job)
    return job.result


def _outcome(job: CaptureJob) -> tuple[bool, int | None, str]:
    out, err = job.proc.communicate()
    if job.proc.returncode != 0:
        return False, None, (err.strip().splitlines() or [f"exit {job.proc.returncode}"])[-1][:400]
    try:
        said = json.loads(out)
        return True, int(said["packets"]), (f"{said['packets']} packets, {said['size'] // 1024 + 1} KB in "
                                            f"{said['seconds']} s (stopped by {said['stopped_by']})")
    except (ValueError, KeyError, TypeError):
        return False, None, f"the capture said {out[:200]!r}"


def report_text(cfg: Config) -> str:
    """`edgepbx status --json` and the last lines each service wrote."""
    status = subprocess.run([sys.executable, "-m", "appliance.cli", "status", "--json", "--config", str(cfg.path)],
                            capture_output=True, text=True, timeout=60)
    parts = ["# edgepbx status --json", status.stdout.strip() or status.stderr.strip()]
    log_dir = Path(os.environ.get(LOG_DIR_ENV) or cfg.data_dir / "log")
    for log in sorted(log_dir.glob("*.log")) if log_dir.is_dir() else []:
        try:
            lines = log.read_text(errors="replace").splitlines()[-LOG_LINES:]
        except OSError as exc:
            lines = [f"cannot read: {exc}"]
        parts += [f"\n# {log} (last {len(lines)} lines)", *lines]
    return "\n".join(parts) + "\n"
