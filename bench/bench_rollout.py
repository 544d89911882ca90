"""A box software rollout to 1,000 simulated boxes (tests/rollout_fleet.py: each speaks the
agent's protocol, fetches the bundle with Range requests and checks its SHA-256) from one portal
instance on PostgreSQL with the bundles in S3 (moto's server on loopback). A heartbeat round
stands for a box's minute. Two strategies in the same run, on fresh databases:

- waves: 10 canaries, then waves of 25 % of the rest; one box in 100 rolls back, which halts
  the rollout, and the operator resumes it at once;
- at once: every box offered the release in the first round (what a provider does without
  rollouts: one command to every box), with the same failing boxes.

Printed per strategy: rounds (minutes of a real fleet) to the end, the wall time of the
compressed run, requests and requests/s, megabytes served, the portal's CPU, and how many boxes
a bad release had reached when the first failure was known.

    .venv/bin/python bench/bench_rollout.py [--boxes 1000] [--bundle-mb 2]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from bench_fleet import cpu_seconds  # noqa: E402
from fleet_client import Connection, enrol_fleet  # noqa: E402
from portal_lab import Portal, S3Server, drop_database, new_database  # noqa: E402
from rollout_fleet import SimBox  # noqa: E402


def make_bundle(folder: Path, megabytes: int) -> tuple[Path, Path]:
    cert, key = folder / "fleet.cert.pem", folder / "fleet.key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/O=edgepbx bench/CN=fleet"], check=True, capture_output=True)
    content = folder / "content"
    content.mkdir()
    (content / "rootfs.ext4").write_bytes(os.urandom(megabytes << 20))
    (content / "manifest.raucm").write_text("[update]\ncompatible=edgepbx-x86\nversion=2.0.0\n\n"
                                            "[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.ext4\n")
    subprocess.run(["rauc", "bundle", f"--cert={cert}", f"--key={key}", str(content), str(folder / "b.raucb")],
                   check=True, capture_output=True)
    return folder / "b.raucb", cert


async def drive(portal: Portal, boxes: list[SimBox], max_rounds: int) -> dict:
    """Rounds until the rollout is done; the operator resumes a halt at the next round."""
    from portal import rollouts
    from portal.db import open_database

    sessions = open_database(portal.data_dir, portal.database_url)
    first_failure_reached = None
    halts = 0
    number = 0
    for number in range(max_rounds):
        await asyncio.gather(*(b.round(number) for b in boxes))
        with sessions() as session:
            shown = rollouts.status(session, with_sites=False)[0]
            if shown["state"] == "halted":
                halts += 1
                if first_failure_reached is None:
                    first_failure_reached = sum(1 for b in boxes if b.offered_in is not None)
                rollouts.control(session, None, "resume")
        if os.environ.get("BENCH_VERBOSE"):
            print(number, shown["state"], shown["counts"], flush=True)
        if shown["state"] == "done":
            break
    for b in boxes:
        b.conn.close()
    return {"rounds": number + 1, "halts": halts, "reached_at_first_failure": first_failure_reached,
            "counts": shown["counts"]}


def one_strategy(name: str, args: argparse.Namespace, s3: S3Server, bundle: Path, cert: Path, workdir: Path) -> dict:
    portal = Portal(workdir / name, new_database(), storage="s3://releases/fleet", env=s3.env)
    proc = portal.start()
    try:
        portal.cli("release", "add", str(bundle), "--keyring", str(cert), "--storage", "s3://releases/fleet")
        credentials = enrol_fleet(portal, args.boxes)
        boxes = [SimBox(f"box-{i:04d}", Connection(portal.port, c), chunk=4 << 20) for i, c in enumerate(credentials)]
        for b in boxes[50::100]:  # one in a hundred, none of them a canary
            b.fails = True
        wave_args = ["--canary", "10", "--wave-percent", "25"] if name == "waves" else ["--canary", "0",
                                                                                          "--wave-percent", "100"]
        portal.cli("rollout", "start", "--release", "2.0.0", "--all", *wave_args)
        cpu_before, started = cpu_seconds([proc.pid]), time.monotonic()
        outcome = asyncio.run(drive(portal, boxes, 200))
        wall = time.monotonic() - started
        requests = sum(b.requests for b in boxes)
        return {**outcome, "wall": wall, "requests": requests, "rps": requests / wall,
                "mb": sum(b.bytes_fetched for b in boxes) / 1e6, "cpu": cpu_seconds([proc.pid]) - cpu_before,
                "errors": sum(len(b.errors) for b in boxes)}
    finally:
        portal.stop()
        drop_database(portal.database_url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=1000)
    parser.add_argument("--bundle-mb", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bundle, cert = make_bundle(workdir, args.bundle_mb)
        size_mb = bundle.stat().st_size / 1e6
        s3 = S3Server(workdir)
        try:
            s3.client().create_bucket(Bucket="releases")
            os.environ.update(s3.env)  # `edgepbx-portal release add` puts the bundle there too
            results = {name: one_strategy(name, args, s3, bundle, cert, workdir) for name in ("waves", "at once")}
        finally:
            s3.stop()
    print(f"{args.boxes} boxes, bundle {size_mb:.1f} MB from S3, one portal instance, PostgreSQL")
    print("| strategy | rounds (min) | halts | boxes offered when the first failure was known | done/failed "
          "| wall s | requests | req/s | MB served | portal CPU s | errors |")
    for name, r in results.items():
        print(f"| {name} | {r['rounds']} | {r['halts']} | {r['reached_at_first_failure']} | "
              f"{r['counts'].get('done', 0)}/{r['counts'].get('failed', 0)} | {r['wall']:.0f} | {r['requests']:,} | "
              f"{r['rps']:.0f} | {r['mb']:,.0f} | {r['cpu']:.0f} | {r['errors']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
