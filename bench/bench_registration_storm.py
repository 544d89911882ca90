"""An office's power comes back: N desk phones, each at its own loopback address, send REGISTER
at the same moment and answer the digest challenge (SIPp, tests/sipp/register_storm.xml). Prints,
for edgepbx and for Asterisk 22 (Debian unstable, bench/asterisk_peer.py, the same phones as
PJSIP endpoints) measured in the same run: phones registered and failed, seconds from the first
REGISTER to the last 200, per-phone time to registered (p50, p95, max), REGISTERs SIPp had to send
again (no answer within 500 ms: datagrams the server dropped or answered late). Asserts nothing.

Usage (root, for the Asterisk chroot): .venv/bin/python bench/bench_registration_storm.py [--phones 100,500,1000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT), str(ROOT / "bench")]

from asterisk_peer import AsteriskOffice, version  # noqa: E402
from conftest import free_port_block, start_pbx, write_office  # noqa: E402
from sipp import StormResult, register_storm, storm_phones  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def line(name: str, count: int, result: StormResult) -> str:
    return (f"{name:<22} {count:>6} {result.registered:>10} {result.failed:>6} {result.seconds:>9.2f} "
            f"{percentile(result.times_ms, 50):>8.0f} {percentile(result.times_ms, 95):>8.0f} "
            f"{max(result.times_ms, default=float('nan')):>8.0f} {result.retransmissions:>8}")


def edgepbx(count: int, work: Path) -> StormResult:
    phones = storm_phones(count)
    extensions = "\n".join(f'  - {{number: "{u}", name: "Desk {u}", password: "{p}"}}' for u, p, _ in phones)
    pbx = start_pbx(write_office(work, extensions=extensions), timeout=60)
    try:
        return register_storm(work, pbx.sip_port, phones)
    finally:
        pbx.stop()


def asterisk(count: int, work: Path) -> StormResult:
    phones = storm_phones(count)
    port = free_port_block(10)
    office = AsteriskOffice({u: p for u, p, _ in phones}, port, (port + 100, port + 199), work / "asterisk.log")
    office.start()
    try:
        return register_storm(work, port, phones)
    finally:
        office.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", default="100,500,1000")
    args = parser.parse_args()
    print(f"peer: {version()}")
    print(f"{'server':<22} {'phones':>6} {'registered':>10} {'failed':>6} {'seconds':>9} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'max ms':>8} {'resent':>8}")
    with tempfile.TemporaryDirectory(prefix="edgepbx-storm-") as tmp:
        for count in (int(n) for n in args.phones.split(",")):
            for name, run in (("edgepbx (Kamailio)", edgepbx), ("Asterisk 22 (PJSIP)", asterisk)):
                work = Path(tmp) / f"{name.split()[0]}-{count}"
                work.mkdir()
                print(line(name, count, run(count, work)), flush=True)


if __name__ == "__main__":
    main()
