"""What a box's held wake-up request costs the portal, and how soon a saved change reaches it.

N boxes (default 1,000) each hold `GET /api/v1/wait` open on portal instance A (PostgreSQL);
changes are saved through the database as instance B would save them (its own transaction with
`pg_notify`), so every wake-up crosses instances. Printed: instance A's resident memory and open
file descriptors before and with the N held requests (per box), its CPU while they are held,
and the time from a save's commit to the box's answer. Beside it, the strongest alternative
without a held request, measured in the same run: the same boxes polling at an interval
(`--poll-seconds`), with the portal CPU it costs and the delay it gives (half the interval on
average).

    .venv/bin/python bench/bench_wait.py [--boxes 1000] [--changes 30] [--poll-seconds 5]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT), str(ROOT / "bench")]

from appliance.cloud.wakeup import WAIT_SECONDS  # noqa: E402
from bench_fleet import cpu_seconds  # noqa: E402
from fleet_client import Connection, enrol_fleet  # noqa: E402
from portal_lab import Portal, drop_database, new_database  # noqa: E402

CONFIG = "site: {name: bench}\ndata_dir: /tmp/bench\nextensions:\n  - {number: \"101\", name: A}\n"


def memory_and_fds(pid: int) -> tuple[float, int]:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return rss / 1024, len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def hold(port: int, credential: str, woken: dict, index: int, stop: asyncio.Event) -> None:
    """One box as the agent's wake-up thread behaves: ask, and ask again when answered."""
    conn = Connection(port, credential)
    await asyncio.sleep(random.uniform(0, WAIT_SECONDS))  # boxes are not in step
    while not stop.is_set():
        seconds = random.randint(WAIT_SECONDS - 5, WAIT_SECONDS + 5)
        status, body = await conn.request(
            "GET", f"/api/v1/wait?seconds={seconds}&config_version={woken['known'][index]}", b"")
        if status == 200 and b'"wake":true' in body:
            woken["at"][index] = time.perf_counter()
            woken["known"][index] += 1
        elif status != 200:
            woken["errors"] += 1
            await asyncio.sleep(1)


async def held_run(portal: Portal, credentials: list[str], sessions, sites: list, changes: int) -> None:
    pid = portal.procs[0].pid
    before_mem, before_fds = memory_and_fds(pid)
    woken = {"at": {}, "known": [0] * len(credentials), "errors": 0}
    stop = asyncio.Event()
    tasks = [asyncio.create_task(hold(portal.port, c, woken, i, stop)) for i, c in enumerate(credentials)]
    await asyncio.sleep(WAIT_SECONDS + 5)  # every box's request is in and held
    held_mem, held_fds = memory_and_fds(pid)
    cpu0, t0 = cpu_seconds([pid]), time.perf_counter()
    await asyncio.sleep(2 * WAIT_SECONDS)  # each box's request answered empty and made anew twice
    idle_cpu = (cpu_seconds([pid]) - cpu0) / (time.perf_counter() - t0)
    print(f"instance A: {before_mem:.0f} MB, {before_fds} fds idle; with {len(credentials)} held requests "
          f"{held_mem:.0f} MB, {held_fds} fds: {(held_mem - before_mem) * 1024 / len(credentials):.1f} KB and "
          f"{(held_fds - before_fds) / len(credentials):.2f} fd per box; CPU while held (each box asking anew every {WAIT_SECONDS} s) {idle_cpu * 100:.1f} % of a core")

    from portal.configs import push_config

    delays = []
    for n in range(changes):
        index = (n * 37) % len(credentials)
        woken["at"].pop(index, None)
        with sessions() as session:
            push_config(session, sites[index], CONFIG + f"# change {n}\n", check=False)
            saved = time.perf_counter()  # committed: the notify is out
        while index not in woken["at"] and time.perf_counter() - saved < 30:
            await asyncio.sleep(0.005)
        delays.append((woken["at"].get(index, float("inf")) - saved) * 1000)
        await asyncio.sleep(0.2)
    stop.set()
    done = sorted(delays)
    print(f"save -> held box answered (other instance's commit, pg_notify): median {statistics.median(done):.0f} ms, "
          f"max {done[-1]:.0f} ms over {changes} changes; errors {woken['errors']}")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def polling_run(portal: Portal, credentials: list[str], interval: float, seconds: float) -> None:
    """The alternative: each box asks (the same route, answering at once) every `interval` s."""
    pid = portal.procs[0].pid
    stop = time.perf_counter() + seconds
    count = {"requests": 0, "errors": 0}

    async def poll(credential: str, offset: float) -> None:
        conn = Connection(portal.port, credential)
        await asyncio.sleep(offset)
        while time.perf_counter() < stop:
            status, _ = await conn.request("GET", "/api/v1/wait?seconds=0", b"")
            count["requests"] += 1
            count["errors"] += status != 200
            await asyncio.sleep(interval)

    cpu0, t0 = cpu_seconds([pid]), time.perf_counter()
    await asyncio.gather(*(poll(c, i * interval / len(credentials)) for i, c in enumerate(credentials)))
    cpu = (cpu_seconds([pid]) - cpu0) / (time.perf_counter() - t0)
    print(f"alternative, polling every {interval:g} s: {count['requests'] / seconds:.0f} requests/s, "
          f"CPU {cpu * 100:.1f} % of a core, a change waits {interval / 2 * 1000:.0f} ms on average "
          f"(up to {interval * 1000:.0f}); errors {count['errors']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process holds every box's socket
    work = Path(tempfile.mkdtemp(prefix="edgepbx-wait-"))
    url = new_database()
    portal = Portal(work / "portal", url)
    try:
        portal.start()
        credentials = enrol_fleet(portal, args.boxes)
        from portal.db import open_database

        sessions = open_database(portal.data_dir, portal.database_url)
        sites = [f"box-{i:04d}" for i in range(args.boxes)]
        asyncio.run(held_run(portal, credentials, sessions, sites, args.changes))
        asyncio.run(polling_run(portal, credentials, args.poll_seconds, 20))
    finally:
        portal.stop()
        drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
