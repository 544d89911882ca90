"""A fleet against the portal: N simulated boxes (default 1,000) heart-beating and syncing call
records at once through HAProxy to two portal instances on one PostgreSQL, then recordings from
many boxes at once. Prints requests/s, latency percentiles, errors, and the CPU each part used
(portal instances, PostgreSQL, HAProxy, the load generator) with PostgreSQL's commits/s.

A box's real minute is one heartbeat and, in a busy office hour, about one call record batch;
--speed compresses that minute (speed 10: each box does its minute's work every 6 s) to find
where the portal stops keeping up.

    .venv/bin/python bench/bench_fleet.py [--boxes 1000] [--speeds 1,10,30] [--seconds 30]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from appliance.cloud.agent import CHUNK_BYTES  # noqa: E402
from fleet_client import Connection, enrol_fleet  # noqa: E402
from portal_lab import Balancer, Portal, drop_database, free_tcp_port, new_database  # noqa: E402


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            pass
    return found


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_by_pid(pids).values())


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used in between by the processes alive at both ends (pooled connections are)."""
    return sum(after[pid] - before[pid] for pid in after if pid in before)


def pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def pg_commits(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def cdr(now: float) -> dict:
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + ".000+03:00"
    return {"id": str(uuid.uuid4()), "started_at": started, "answered_at": started, "ended_at": started,
            "direction": random.choice(["inbound", "outbound", "internal"]), "src": "101", "dst": "+74951234567",
            "disposition": "answered", "duration": 63, "billsec": 60, "sip_code": 200, "recording": None}


HEARTBEAT = {"version": "0.1.0", "uptime_seconds": 86400, "disk": {"total_bytes": 31e9, "free_bytes": 20e9},
             "memory": {"total_bytes": 4e9, "available_bytes": 3e9}, "trunks": [{"name": "main", "state": "registered"}],
             "phones_registered": 8, "extensions": 10, "outbox_depth": 0, "heartbeat_seconds": 60,
             "phones": [{"mac": f"805ec0{i:06x}", "vendor": "yealink", "model": "T46U", "extension": str(101 + i),
                         "registered": True} for i in range(8)]}


async def box_minute(conn: Connection, period: float, until: float, latencies: list, errors: list) -> None:
    """A heartbeat and one batch of 3 call records every `period` s."""
    await asyncio.sleep(random.uniform(0, min(period, until - time.monotonic())))  # boxes are not in step
    while time.monotonic() < until:
        started = time.monotonic()
        for path, body in (("/api/v1/heartbeat", HEARTBEAT), ("/api/v1/calls", {"calls": [cdr(time.time()) for _ in range(3)]})):
            t = time.perf_counter()
            status, _ = await conn.request("POST", path, json.dumps(body).encode())
            latencies.append(time.perf_counter() - t)
            if status != 200:
                errors.append(status)
        await asyncio.sleep(max(0.0, min(period - (time.monotonic() - started), until - time.monotonic())))


async def fleet(port: int, credentials: list[str], period: float, seconds: float) -> tuple[list, list]:
    latencies: list[float] = []
    errors: list[int] = []
    conns = [Connection(port, c) for c in credentials]
    until = time.monotonic() + seconds
    await asyncio.gather(*(box_minute(c, period, until, latencies, errors) for c in conns))
    for c in conns:
        if c.writer:
            c.writer.close()
    return latencies, errors


async def recordings(port: int, credentials: list[str], seconds: float, size: int) -> tuple[int, list, list]:
    """Each box uploads one-minute recordings back to back (offer, then chunks as the agent sends them)."""
    import hashlib

    latencies: list[float] = []
    errors: list[int] = []
    stored = [0]
    until = time.monotonic() + seconds

    async def one_box(credential: str) -> None:
        conn = Connection(port, credential)
        while time.monotonic() < until:
            record = cdr(time.time())
            await conn.request("POST", "/api/v1/calls", json.dumps({"calls": [record]}).encode())
            audio = os.urandom(size)
            sha = hashlib.sha256(audio).hexdigest()
            offer = {"call_id": record["id"], "sha256": sha, "size": size}
            status, data = await conn.request("POST", "/api/v1/recordings", json.dumps(offer).encode())
            offset = 0
            while status == 200 and json.loads(data).get("status") == "upload":
                chunk = audio[offset:offset + CHUNK_BYTES]
                t = time.perf_counter()
                status, data = await conn.request("PUT", f"/api/v1/recordings/{sha}?call_id={record['id']}&offset={offset}",
                                                  chunk, "application/octet-stream")
                latencies.append(time.perf_counter() - t)
                offset += len(chunk)
            if status == 200:
                stored[0] += 1
            else:
                errors.append(status)

    await asyncio.gather(*(one_box(c) for c in credentials))
    return stored[0], latencies, errors


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 2 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=1000)
    parser.add_argument("--speeds", default="1,10,30")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--uploaders", type=int, default=50, help="boxes uploading recordings at once")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgepbx-fleet-"))
    url = new_database()
    portal = Portal(work / "portal", url)
    balancer = None
    try:
        portal.start()
        portal.start(port=free_tcp_port())
        balancer = Balancer(work, [portal.port, int(portal.procs[1].args[portal.procs[1].args.index("--port") + 1])])
        t = time.perf_counter()
        credentials = enrol_fleet(portal, args.boxes)
        print(f"{args.boxes} sites enrolled in {time.perf_counter() - t:.1f} s (in-process, not measured below)")
        portal_pids = [p.pid for p in portal.procs]
        print(f"\n{args.boxes} boxes, each: a heartbeat and a batch of 3 call records per (compressed) minute; "
              f"2 portal instances behind HAProxy, one PostgreSQL, {os.cpu_count()} cores in all")
        print(f"{'speed':>5} {'offered/s':>9} {'done/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6} "
              f"{'portals %':>9} {'postgres %':>10} {'haproxy %':>9} {'loadgen %':>9} {'commits/s':>9}")
        for speed in [float(s) for s in args.speeds.split(",")]:
            period = 60.0 / speed
            parts = lambda: {"portal": portal_pids, "pg": pids_named("postgres"),  # noqa: E731
                             "lb": [balancer.proc.pid], "me": [os.getpid()]}
            cpu0 = {k: cpu_by_pid(v) for k, v in parts().items()}
            commits0, t0 = pg_commits(url), time.perf_counter()
            latencies, errors = asyncio.run(fleet(balancer.port, credentials, period, max(args.seconds, period)))
            elapsed = time.perf_counter() - t0
            cpu = {k: cpu_delta(cpu0[k], cpu_by_pid(v)) / elapsed * 100 for k, v in parts().items()}
            commits = (pg_commits(url) - commits0) / elapsed
            print(f"{speed:>5.0f} {args.boxes * 2 / period:>9.0f} {len(latencies) / elapsed:>8.0f} "
                  f"{percentile(latencies, 50):>7.1f} {percentile(latencies, 95):>7.1f} {percentile(latencies, 99):>7.1f} "
                  f"{len(errors):>6} {cpu['portal']:>9.0f} {cpu['pg']:>10.0f} {cpu['lb']:>9.0f} {cpu['me']:>9.0f} "
                  f"{commits:>9.0f}")
        size = 16000 * 2 * 60 + 44  # a one-minute 16 kHz recording
        cpu0 = cpu_seconds(portal_pids)
        t0 = time.perf_counter()
        stored, chunk_latencies, errors = asyncio.run(recordings(balancer.port, credentials[:args.uploaders],
                                                                 args.seconds, size))
        elapsed = time.perf_counter() - t0
        print(f"\nrecordings: {args.uploaders} boxes uploading one-minute recordings (1.92 MB) at once for "
              f"{elapsed:.0f} s: {stored} stored, {stored * size / 1e6 / elapsed:.1f} MB/s, "
              f"{stored / elapsed * 60:.0f} recordings/min, chunk p50/p95 {percentile(chunk_latencies, 50):.0f}/"
              f"{percentile(chunk_latencies, 95):.0f} ms, {len(errors)} errors, portals "
              f"{(cpu_seconds(portal_pids) - cpu0) / elapsed * 100:.0f} % CPU")
        print(f"requests per instance: {balancer.requests()}")
    finally:
        if balancer:
            balancer.stop()
        portal.stop()
        drop_database(url)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
