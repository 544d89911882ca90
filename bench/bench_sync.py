"""Backlog drain: a box that was cut off from the portal with 10,000 call records and 200
one-minute recordings pending, then reconnected. Measured on SQLite and on PostgreSQL:
the time until the outbox is empty and the portal's ingest rate, beside the database's own
ceiling (the same upsert called in-process, no HTTP, no agent).

    .venv/bin/python bench/bench_sync.py [--cdrs 10000] [--recordings 200] [--backend sqlite,postgresql]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from conftest import write_office  # noqa: E402
from portal_lab import AgentProcess, close_portal, enroll, seed_calls, start_portal  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def outbox_depth(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        counts = dict(conn.execute("SELECT kind, count(*) FROM outbox GROUP BY kind").fetchall())
    finally:
        conn.close()
    return counts.get("cdr", 0), counts.get("recording", 0)


def database_ceiling(portal, rows: list[dict]) -> float:
    """Rows/s of the portal's own upsert, called directly on the same database (batches of 500)."""
    from portal.db import open_database
    from portal.fleet import add_site, site_by_name
    from portal.sync import upsert_calls

    sessions = open_database(portal.data_dir, portal.database_url)
    with sessions() as session:
        add_site(session, "Ceiling", "ceiling")
        site = site_by_name(session, "ceiling")
        started = time.perf_counter()
        for i in range(0, len(rows), 500):
            upsert_calls(session, site, rows[i:i + 500])
        return len(rows) / (time.perf_counter() - started)


def drain(backend: str, cdrs: int, recordings: int, work: Path) -> dict:
    portal = start_portal(work, backend)
    try:
        box = work / "box"
        box.mkdir()
        office = write_office(box, "cloud: {heartbeat_seconds: 60, retry_max_seconds: 5, upload_kbps: 0}")
        assert enroll(office, portal, portal.add_site("Bench", "bench-box")).returncode == 0
        data_dir = box / "var"
        t = time.perf_counter()
        seed_calls(data_dir, cdrs)
        seed_calls(data_dir, recordings, recording_seconds=60)
        seeded = time.perf_counter() - t
        wav_bytes = sum(p.stat().st_size for p in (data_dir / "recordings").glob("*.wav"))
        db = data_dir / "cdr.sqlite"
        agent = AgentProcess(office).start()
        portal_pid = portal.procs[0].pid
        portal_cpu0 = cpu_seconds(portal_pid)
        started = time.perf_counter()
        cdrs_done = None
        while True:
            pending_cdrs, pending_recordings = outbox_depth(db)
            now = time.perf_counter() - started
            if pending_cdrs == 0 and cdrs_done is None:
                cdrs_done = now
            if pending_cdrs == 0 and pending_recordings == 0:
                break
            if now > 900:
                raise RuntimeError(f"backlog not drained in 900 s: {pending_cdrs} CDRs, {pending_recordings} recordings")
            time.sleep(0.1)
        total = time.perf_counter() - started
        agent_cpu = cpu_seconds(agent.proc.pid)
        portal_cpu = cpu_seconds(portal_pid) - portal_cpu0
        agent.kill()
        calls = portal.calls("bench-box")
        assert len(calls) == cdrs + recordings and sum(bool(c["recording_sha256"]) for c in calls) == recordings
        rows = [{k: c[k] for k in c if k != "recording_sha256"} for c in calls[:cdrs]]
        ceiling = database_ceiling(portal, rows)
        return {"backend": backend, "seeded_s": seeded, "cdr_s": cdrs_done, "total_s": total,
                "cdr_rate": (cdrs + recordings) / cdrs_done, "rec_s": total - cdrs_done,
                "rec_mb_s": wav_bytes / 1e6 / max(0.001, total - cdrs_done), "wav_mb": wav_bytes / 1e6,
                "agent_cpu": agent_cpu, "portal_cpu": portal_cpu, "ceiling": ceiling}
    finally:
        close_portal(portal)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdrs", type=int, default=10_000)
    parser.add_argument("--recordings", type=int, default=200)
    parser.add_argument("--backend", default="sqlite,postgresql")
    args = parser.parse_args()
    results = []
    for backend in args.backend.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"edgepbx-sync-{backend}-"))
        try:
            results.append(drain(backend, args.cdrs, args.recordings, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nbacklog: {args.cdrs} call records + {args.recordings} recorded one-minute calls (16 kHz WAV)")
    print(f"{'portal db':<11} {'CDRs synced':>11} {'CDRs/s':>8} {'DB ceiling/s':>12} {'recordings':>10} {'MB/s':>6} "
          f"{'total':>7} {'agent CPU':>9} {'portal CPU':>10}")
    for r in results:
        print(f"{r['backend']:<11} {r['cdr_s']:>10.1f}s {r['cdr_rate']:>8.0f} {r['ceiling']:>12.0f} {r['rec_s']:>9.1f}s "
              f"{r['rec_mb_s']:>6.1f} {r['total_s']:>6.1f}s {r['agent_cpu']:>8.1f}s {r['portal_cpu']:>9.1f}s")
    print("goal: the 10,000-CDR backlog in under 60 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
