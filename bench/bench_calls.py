"""Benchmarks of the PBX core on this machine; prints figures, asserts nothing.

1. Call setup time through Kamailio + feature server (SIPp caller with digest auth, SIPp callee
   that answers at once): authenticated INVITE -> 180 and -> 200 at the caller, p50/p95. The same
   SIPp run against Kamailio alone (EDGEPBX_BENCH_DIRECT_ROUTING=1: the edge routes straight to
   the callee) is the limit without the feature server.
2. Concurrent bridged, recorded calls: pjsua2 phones hold N calls with a tone each way; per call
   the RTP packets received versus expected and the lost ones (RTP sequence gaps), and the feature
   server's CPU per call.

Usage: .venv/bin/python bench/bench_calls.py [--calls 300] [--rate 20] [--levels 10,20,40,60]
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from conftest import descendants_of, start_pbx, write_office  # noqa: E402
from sipp import free_udp_port, run_sipp  # noqa: E402

SIPP_DIR = Path(__file__).resolve().parent / "sipp"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def setup_times(direct: bool, calls: int, rate: int, workdir: Path) -> dict[str, list[float]]:
    os.environ["EDGEPBX_BENCH_DIRECT_ROUTING"] = "1" if direct else "0"
    workdir.mkdir(parents=True, exist_ok=True)
    pbx = start_pbx(write_office(workdir))
    try:
        uas_port = free_udp_port()
        reg = run_sipp("register.xml", workdir, pbx.sip_port, service="102", user="102", password="pw-102-secret",
                       local_port=uas_port)
        assert reg.returncode == 0, reg.output
        uas = subprocess.Popen(["sipp", "-sf", str(ROOT / "tests" / "sipp" / "uas_answer.xml"), "-nostdin", "-i", "127.0.0.1",
                                "-p", str(uas_port), "-bg"], cwd=workdir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        uas.wait()
        time.sleep(0.5)
        result: dict[str, list[float]] = {"180": [], "200": [], "failed": []}
        for response in ("180", "200"):  # SIPp stops one timer per call: one run for each response
            scenario = (SIPP_DIR / "uac_setup.xml").read_text()
            scenario = scenario.replace(f"@RTD{response}@", 'rtd="1"').replace("@RTD180@", "").replace("@RTD200@", "")
            script = workdir / f"uac_setup_{response}.xml"
            script.write_text(scenario)
            uac = subprocess.run(["sipp", "-sf", str(script), "-nostdin", "-i", "127.0.0.1",
                                  "-p", str(free_udp_port()), "-s", "102", "-key", "caller", "101", "-au", "101",
                                  "-ap", "pw-101-secret", "-m", str(calls), "-r", str(rate), "-l", str(rate * 4),
                                  "-trace_rtt", "-rtt_freq", "1", "-timeout", "120s", f"127.0.0.1:{pbx.sip_port}"],
                                 cwd=workdir, capture_output=True, text=True)
            rtt_files = sorted(workdir.glob(f"uac_setup_{response}_*_rtt.csv"))
            if not rtt_files:
                raise RuntimeError(f"SIPp wrote no timings: {uac.stdout[-2000:]} {uac.stderr[-2000:]}")
            for row in csv.reader(open(rtt_files[-1]), delimiter=";"):
                if len(row) >= 3 and row[2].strip() == "1":
                    result[response].append(float(row[1]))
            if uac.returncode != 0:
                result["failed"].append(float(uac.returncode))
        subprocess.run(["pkill", "-f", "--", f"-p {uas_port} -bg"], check=False)
        return result
    finally:
        pbx.stop()
        os.environ.pop("EDGEPBX_BENCH_DIRECT_ROUTING", None)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def concurrent_calls(levels: list[int], hold: float, workdir: Path) -> list[dict]:
    import pjsua2 as pj
    from phones import PhoneLab

    workdir.mkdir(parents=True, exist_ok=True)
    pbx = start_pbx(write_office(workdir))
    fs_pid = next(p for p in descendants_of(pbx.proc.pid)
                  if b"featureserver" in Path(f"/proc/{p}/cmdline").read_bytes())
    lab = PhoneLab(tmp=workdir, port=pbx.sip_port, max_calls=2 * max(levels) + 8, record=False)
    lab.start()
    rows = []
    try:
        caller = lab.phone("101", "pw-101-secret", 500.0)
        callee = lab.phone("102", "pw-102-secret", 1300.0)
        for n in levels:
            calls = [caller.dial("102") for _ in range(n)]
            try:
                lab.wait_for(lambda: all(c.state == pj.PJSIP_INV_STATE_CONFIRMED for c in calls), 30, f"{n} calls up")
            except AssertionError:
                up = sum(c.state == pj.PJSIP_INV_STATE_CONFIRMED for c in calls)
                rows.append({"calls": n, "established": up})
                lab.hang_up_everything()
                break
            lab.poll(1.0)  # settle
            legs = calls + list(callee.calls)
            before = {id(c): c.getStreamStat(0).rtcp for c in legs}
            before_rx = {k: (v.rxStat.pkt, v.rxStat.loss) for k, v in before.items()}
            cpu0, t0 = cpu_seconds(fs_pid), time.monotonic()
            lab.poll(hold)
            cpu1, t1 = cpu_seconds(fs_pid), time.monotonic()
            received = lost = 0
            for c in legs:
                stat = c.getStreamStat(0).rtcp.rxStat
                received += stat.pkt - before_rx[id(c)][0]
                lost += stat.loss - before_rx[id(c)][1]
            expected = int(len(legs) * (t1 - t0) * 50)  # 20 ms packets
            cpu_percent = 100 * (cpu1 - cpu0) / (t1 - t0)
            rows.append({"calls": n, "established": n, "rx_packets": received, "expected": expected,
                         "lost": lost, "loss_percent": 100 * max(0, expected - received) / expected,
                         "fs_cpu_percent": cpu_percent, "cpu_per_call": cpu_percent / n})
            lab.hang_up_everything()
            lab.poll(1.0)
    finally:
        lab.stop()
        pbx.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rate", type=int, default=20)
    parser.add_argument("--levels", default="10,20,30,40,50,60")
    parser.add_argument("--hold", type=float, default=10.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="edgepbx-bench-"))
    print(f"machine: {os.cpu_count()} cores; work files in {workdir}")

    print(f"\n1. call setup time, {args.calls} calls at {args.rate}/s (SIPp, digest auth, ms at the caller)")
    print(f"{'path':<34} {'180 p50':>8} {'180 p95':>8} {'200 p50':>8} {'200 p95':>8} {'calls':>6}")
    for label, direct in (("Kamailio + feature server", False), ("Kamailio alone (baseline)", True)):
        r = setup_times(direct, args.calls, args.rate, workdir / ("direct" if direct else "full"))
        if not r["200"]:
            print(f"{label:<34} no completed calls")
            continue
        print(f"{label:<34} {percentile(r['180'], 50):8.2f} {percentile(r['180'], 95):8.2f} "
              f"{percentile(r['200'], 50):8.2f} {percentile(r['200'], 95):8.2f} {len(r['200']):6d}"
              + ("  (some calls failed)" if r["failed"] else ""))

    levels = [int(x) for x in args.levels.split(",")]
    print(f"\n2. concurrent bridged + recorded calls, {args.hold:.0f} s hold each level (pjsua2 phones, tone both ways)")
    print(f"{'calls':>5} {'up':>4} {'rx pkts':>9} {'expected':>9} {'seq lost':>8} {'short %':>8} {'FS CPU %':>9} {'CPU %/call':>10}")
    for row in concurrent_calls(levels, args.hold, workdir / "load"):
        if "rx_packets" not in row:
            print(f"{row['calls']:5d} {row['established']:4d}  (not all calls could be set up; stopped)")
            continue
        print(f"{row['calls']:5d} {row['established']:4d} {row['rx_packets']:9d} {row['expected']:9d} {row['lost']:8d} "
              f"{row['loss_percent']:8.2f} {row['fs_cpu_percent']:9.1f} {row['cpu_per_call']:10.2f}")
    print("\n'short %': packets the phones did not receive against 50/s per leg; 'seq lost': RTP sequence gaps.")
    print("The phones run on the same 2 cores as the appliance, so the figures are a floor for the box alone.")


if __name__ == "__main__":
    main()
