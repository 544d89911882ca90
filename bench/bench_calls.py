"""Benchmarks of the PBX core on this machine; prints figures, asserts nothing.

1. Call setup time through Kamailio + feature server (SIPp caller with digest auth, SIPp callee
   that answers at once): authenticated INVITE -> 180 and -> 200 at the caller, p50/p95, from
   SIPp's microsecond message timestamps; again with a BLF watcher on both phones. The same
   SIPp run against Kamailio alone (EDGEPBX_BENCH_DIRECT_ROUTING=1: the edge routes straight to
   the callee) is the limit without the feature server.
2. Concurrent bridged, recorded calls: pjsua2 phones (bench/phone_farm.py, up to 25 calls a
   process, G.711 A-law) hold N calls with a tone each way; the RTP packets the phones received
   versus expected, the lost ones (RTP sequence gaps), the feature server's CPU (% of one core)
   and resident memory per call.

Usage: .venv/bin/python bench/bench_calls.py [--calls 300] [--rate 20] [--levels 50,100,200,300]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import queue
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from conftest import descendants_of, free_port_block, start_pbx, write_office  # noqa: E402
from sipp import free_udp_port, run_sipp, start_sipp  # noqa: E402

SIPP_DIR = Path(__file__).resolve().parent / "sipp"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def setup_times(direct: bool, calls: int, rate: int, workdir: Path, watched: bool = False) -> dict[str, list[float]]:
    """`watched`: a BLF key (SIPp) subscribes to both phones first, so each call's states are
    PUBLISHed to the presence server (without watchers the edge does not track dialogs)."""
    os.environ["EDGEPBX_BENCH_DIRECT_ROUTING"] = "1" if direct else "0"
    workdir.mkdir(parents=True, exist_ok=True)
    capacity = rate * 3  # the offered load (rate x 1 s hold) never meets calls.max_concurrent
    pbx = start_pbx(write_office(workdir, extra=f"calls: {{max_concurrent: {capacity}}}", rtp_count=capacity * 4 + 64))
    try:
        uas_port = free_udp_port()
        reg = run_sipp("register.xml", workdir, pbx.sip_port, service="102", user="102", password="pw-102-secret",
                       local_port=uas_port)
        assert reg.returncode == 0, reg.output
        uas = subprocess.Popen(["sipp", "-sf", str(ROOT / "tests" / "sipp" / "uas_answer.xml"), "-nostdin", "-i",
                                "127.0.0.1", "-p", str(uas_port)], cwd=workdir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        watchers = [start_sipp("blf_watch.xml", workdir, pbx.sip_port, service=ext, user="104",
                               password="pw-104-secret", fill={"QUIET_MS": "600000", "EVENT": "dialog", "HOST": "127.0.0.1"},
                               timeout=600)[0] for ext in ("101", "102")] if watched else []
        time.sleep(0.5)
        trace = workdir / "uac_setup.messages"
        uac = subprocess.run(["sipp", "-sf", str(SIPP_DIR / "uac_setup.xml"), "-nostdin", "-i", "127.0.0.1",
                              "-p", str(free_udp_port()), "-s", "102", "-key", "caller", "101", "-au", "101",
                              "-ap", "pw-101-secret", "-m", str(calls), "-r", str(rate), "-l", str(rate * 4),
                              "-trace_msg", "-message_file", str(trace), "-timeout", "120s",
                              f"127.0.0.1:{pbx.sip_port}"], cwd=workdir, capture_output=True, text=True)
        result = setup_delays(trace.read_text())
        result["failed"] = [] if uac.returncode == 0 else [float(uac.returncode)]
        uas.kill()
        for watcher in watchers:
            watcher.kill()
        return result
    finally:
        pbx.stop()
        os.environ.pop("EDGEPBX_BENCH_DIRECT_ROUTING", None)


BLOCK = re.compile(r"^-{20,} (\S+ \S+)\n(UDP message (sent|received)).*?\n\n(.*?)(?=^-{20,} |\Z)", re.S | re.M)


def setup_delays(messages: str) -> dict[str, list[float]]:
    """Per call, ms from the authenticated INVITE (CSeq 2) leaving SIPp to the first 180 and 200
    arriving, from SIPp's microsecond message timestamps (-trace_msg)."""
    sent: dict[str, float] = {}
    got: dict[str, dict[str, float]] = {"180": {}, "200": {}}
    for stamp, _, direction, text in BLOCK.findall(messages):
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        call_id = re.search(r"^Call-ID:\s*(\S+)", text, re.M | re.I)
        if not call_id or not re.search(r"^CSeq:\s*2 INVITE", text, re.M | re.I):
            continue
        call_id = call_id.group(1)
        first = text.split("\n", 1)[0]
        if direction == "sent" and first.startswith("INVITE"):
            sent.setdefault(call_id, when)
        elif direction == "received":
            for code in ("180", "200"):
                if first.startswith(f"SIP/2.0 {code}"):
                    got[code].setdefault(call_id, when)
    return {code: [1000 * (t - sent[c]) for c, t in got[code].items() if c in sent] for code in got}


PER_FARM = 25


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (threads of one name summed): where the feature server spends."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def farm(args: list[str], workdir: Path) -> subprocess.Popen:
    """Starts a phone_farm.py process; a thread queues its protocol lines (pjlib's log lines
    on the same stdout are dropped)."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("phone_farm.py")), "--workdir", str(workdir),
                             *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=open(workdir / f"farm-{args[3]}.err", "w"), text=True, cwd=workdir)
    proc.lines = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            line = line.strip()
            if line in ("registered", "up") or line.startswith(("registration failed", '{"')):
                proc.lines.put(line)
        proc.lines.put("exited")

    threading.Thread(target=pump, daemon=True).start()
    return proc


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    try:
        return proc.lines.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError("phone process silent") from None


class EdgepbxOffice:
    """The appliance as the system under test: `pids` are the feature server's."""

    quality = True  # the feature server reads each leg's stream figures every second (issue 26)

    def __init__(self, extensions: dict[str, str], level: int, workdir: Path):
        listed = "\n".join(f'  - {{number: "{n}", password: "{pw}"}}' for n, pw in extensions.items())
        self.config = write_office(workdir, extensions=listed, rtp_count=level * 8 + 64,
                                   extra=f"calls: {{no_answer_timeout: 30, max_concurrent: {level}}}")
        self.pbx = None

    def start(self) -> None:
        os.environ["EDGEPBX_QUALITY_SAMPLE_SECONDS"] = "1" if self.quality else "0"
        try:
            self.pbx = start_pbx(self.config)
        finally:
            del os.environ["EDGEPBX_QUALITY_SAMPLE_SECONDS"]
        self.sip_port = self.pbx.sip_port

    def pids(self) -> list[int]:
        return [p for p in descendants_of(self.pbx.proc.pid) if b"featureserver" in Path(f"/proc/{p}/cmdline").read_bytes()]

    def recording_count(self) -> int:
        """WAVs, and those the cloud agent already encoded to Opus once their call ended."""
        return sum(len(list((self.pbx.data_dir / "recordings").rglob(pattern))) for pattern in ("*.wav", "*.opus"))


    def stop(self) -> None:
        if self.pbx is not None:
            self.pbx.stop()


class EdgepbxWithoutQuality(EdgepbxOffice):
    """The same with the per-call quality figures off: what collecting them costs."""
    quality = False


def asterisk_office(extensions: dict[str, str], level: int, workdir: Path):
    from asterisk_peer import AsteriskOffice

    rtp_count = level * 8 + 64
    base = free_port_block(100 + rtp_count)
    office = AsteriskOffice(extensions, base, (base + 100, base + 99 + rtp_count), workdir / "asterisk.log")
    return office


def concurrent_calls(level: int, hold: float, workdir: Path, make_office=EdgepbxOffice) -> dict:
    """`level` calls between phone processes (PER_FARM calls each), held `hold` s, through a fresh
    office of `make_office` (the appliance, or Asterisk configured alike)."""
    workdir.mkdir(parents=True, exist_ok=True)
    groups = [min(PER_FARM, level - i) for i in range(0, level, PER_FARM)]
    callers = [f"2{i:02d}" for i in range(len(groups))]
    callees = [f"3{i:02d}" for i in range(len(groups))]
    office = make_office({n: f"pw-{n}-secret" for n in callers + callees}, level, workdir)
    procs: list[subprocess.Popen] = []
    try:
        office.start()
        workers = office.pids()
        idle_rss_mb = sum(resident_mb(p) for p in workers)
        for callee, count in zip(callees, groups):
            procs.append(farm(["--port", str(office.sip_port), "--number", callee, "--password", f"pw-{callee}-secret",
                               "--calls", str(count), "--hold", str(hold), "--tone", "1300"], workdir))
        for proc in procs:
            assert read_line(proc, 30) == "registered"
        for caller, callee, count in zip(callers, callees, groups):
            procs.append(farm(["--port", str(office.sip_port), "--number", caller, "--password", f"pw-{caller}-secret",
                               "--calls", str(count), "--dial", callee, "--hold", str(hold), "--tone", "500"], workdir))
        for proc in procs[len(groups):]:
            assert read_line(proc, 30) == "registered"
        for proc in procs:
            line = read_line(proc, 90)
            if line != "up":
                return {"calls": level, "error": line}
        time.sleep(1.5)
        cpu0, t0, threads0 = sum(cpu_seconds(p) for p in workers), time.monotonic(), thread_cpu(workers[0])
        farm0 = sum(cpu_seconds(p.pid) for p in procs)
        time.sleep(max(1.0, hold - 2.0))
        cpu1, t1, threads1 = sum(cpu_seconds(p) for p in workers), time.monotonic(), thread_cpu(workers[0])
        farm_percent = 100 * (sum(cpu_seconds(p.pid) for p in procs) - farm0) / (t1 - t0)
        busiest = sorted(((100 * (threads1[n] - threads0.get(n, 0.0)) / (t1 - t0), n) for n in threads1), reverse=True)[:3]
        rss_mb = sum(resident_mb(p) for p in workers)
        results = [json.loads(read_line(proc, hold + 30)) for proc in procs]
        for proc in procs:
            proc.stdin.close()
        legs = sum(r["legs"] for r in results)
        expected = sum(r["legs"] * r["seconds"] * 50 for r in results)  # 20 ms packets
        received = sum(r["rx"] for r in results)
        cpu_percent = 100 * (cpu1 - cpu0) / (t1 - t0)
        return {"calls": level, "legs": legs, "rx": received, "expected": int(expected),
                "lost": sum(r["lost"] for r in results), "short_percent": 100 * max(0.0, expected - received) / expected,
                "fs_cpu_percent": cpu_percent, "cpu_per_call": cpu_percent / level,
                "recordings": office.recording_count(),
                "rss_mb": rss_mb, "rss_per_call_kb": 1024 * (rss_mb - idle_rss_mb) / level,
                "farm_cpu_percent": farm_percent,
                "fs_threads": ", ".join(f"{name} {percent:.0f}%" for percent, name in busiest)}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        office.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rate", type=int, default=20)
    parser.add_argument("--levels", default="50,100,200,300")
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--no-asterisk", action="store_true", help="skip the Asterisk 22 peer (it needs root and debootstrap)")
    parser.add_argument("--no-setup", action="store_true", help="skip part 1 (call setup time)")
    parser.add_argument("--quality-cost", action="store_true",
                        help="in part 2, edgepbx with its per-call quality figures off too, alternating runs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="edgepbx-bench-"))
    print(f"machine: {os.cpu_count()} cores; work files in {workdir}")

    if not args.no_setup:
        call_setup(args, workdir)
    levels = [int(x) for x in args.levels.split(",")]
    systems = [EdgepbxOffice] + ([EdgepbxWithoutQuality, EdgepbxOffice, EdgepbxWithoutQuality] if args.quality_cost else []) \
        + ([] if args.no_asterisk else [asterisk_office])
    concurrent(args, workdir, levels, systems)


def call_setup(args: argparse.Namespace, workdir: Path) -> None:
    print(f"\n1. call setup time, {args.calls} calls at {args.rate}/s (SIPp, digest auth, ms at the caller)")
    print(f"{'path':<34} {'180 p50':>8} {'180 p95':>8} {'200 p50':>8} {'200 p95':>8} {'calls':>6}")
    for label, direct, watched in (("Kamailio + feature server", False, False),
                                   ("  the same, both phones BLF-watched", False, True),
                                   ("Kamailio alone (baseline)", True, False)):
        r = setup_times(direct, args.calls, args.rate, workdir / f"{direct}-{watched}", watched)
        if not r["200"]:
            print(f"{label:<34} no completed calls")
            continue
        print(f"{label:<34} {percentile(r['180'], 50):8.2f} {percentile(r['180'], 95):8.2f} "
              f"{percentile(r['200'], 50):8.2f} {percentile(r['200'], 95):8.2f} {len(r['200']):6d}"
              + ("  (some calls failed)" if r["failed"] else ""))


def concurrent(args: argparse.Namespace, workdir: Path, levels: list[int], systems: list) -> None:
    if not args.no_asterisk:
        from asterisk_peer import version
        print(f"\npeer: {version()} (Debian unstable, chroot), MixMonitor on every call")
    print(f"\n2. concurrent bridged + recorded calls, {args.hold:.0f} s hold per level (pjsua2 phones, G.711 A-law, "
          f"tone both ways); CPU in % of one core, the machine has {os.cpu_count()} cores")
    print(f"{'system':<9}{'calls':>5} {'rx pkts':>9} {'expected':>9} {'seq lost':>8} {'short %':>8} {'CPU %':>6} "
          f"{'%/call':>6} {'RSS MB':>7} {'KB/call':>8} {'WAVs':>5} {'farm %':>6}  busiest threads")
    for make_office in systems:
        best = None
        name = {EdgepbxOffice: "edgepbx", EdgepbxWithoutQuality: "no-qual"}.get(make_office, "Asterisk")
        for level in levels:
            row = concurrent_calls(level, args.hold, workdir / f"{make_office.__name__}-{level}-{time.monotonic_ns()}",
                                   make_office)
            if "error" in row:
                print(f"{name:<9}{level:5d}  failed: {row['error']}")
                break
            print(f"{name:<9}{row['calls']:5d} {row['rx']:9d} {row['expected']:9d} {row['lost']:8d} "
                  f"{row['short_percent']:8.2f} {row['fs_cpu_percent']:6.1f} {row['cpu_per_call']:6.2f} "
                  f"{row['rss_mb']:7.1f} {row['rss_per_call_kb']:8.0f} {row['recordings']:5d} "
                  f"{row['farm_cpu_percent']:6.1f}  {row['fs_threads']}")
            if row["short_percent"] < 0.5:
                best = row
        if best is not None:
            machine = 100 * (os.cpu_count() or 1)
            print(f"  -> at {best['cpu_per_call']:.2f} % a call (measured at {best['calls']} calls): about "
                  f"{0.5 * machine / best['cpu_per_call']:.0f} calls at 50 % and {0.9 * machine / best['cpu_per_call']:.0f} "
                  f"at 90 % of the machine's CPU")
    print("\n'short %': packets the phones did not receive against 50/s per leg; 'seq lost': RTP sequence gaps.")
    print("The phones run on the same 2 cores as the system under test ('farm %'), so the figures are a floor.")


if __name__ == "__main__":
    main()
