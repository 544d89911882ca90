"""Boot storm: N phones ask for their configs at once. Prints figures, asserts nothing.

Each simulated phone is a curl process fetching its per-MAC file and its common file, all started
together. Measured: time until every phone has both files, and per-file latency p50/p95, for
edgepbx's TFTP (tftpy, rendered per request) and HTTP servers, against tftpd-hpa serving the same
files pre-rendered from disk, in the same run.

Usage: .venv/bin/python bench/bench_provisioning.py [--phones 100]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from conftest import free_port_block  # noqa: E402

MODELS = ["T46U", "T54W", "T43U"]
FIRMWARE_MB = 8


def office(directory: Path, phones: int, base: int) -> Path:
    lines = [f'  - {{number: "{200 + i}", name: "Desk {i}", phone: {{mac: "805ec0{i:06x}", vendor: yealink, '
             f'model: {MODELS[i % len(MODELS)]}}}}}' for i in range(phones)]
    (directory / "firmware").mkdir(exist_ok=True)
    (directory / "firmware" / "T46U.rom").write_bytes(os.urandom(FIRMWARE_MB * 1024 * 1024))
    path = directory / "office.yaml"
    path.write_text(f"""data_dir: ./var
network: {{bind: 127.0.0.1, sip_port: {base}, rtp_ports: [{base + 100}, {base + 199}]}}
provisioning: {{tftp_port: {base + 30}, http_port: {base + 31}, https_port: 0, discovery: false, pnp: false,
               firmware_dir: ./firmware}}
extensions:
""" + "\n".join(lines) + "\n")
    return path


def storm(urls_per_phone: list[list[str]], curl_options: str) -> tuple[float, list[float], int]:
    """Starts one shell per phone fetching its URLs in turn; returns (wall time, per-file seconds, failures)."""
    started = time.monotonic()
    procs = []
    for urls in urls_per_phone:
        script = " && ".join(f"curl -s -S --max-time 30 {curl_options} -o /dev/null -w '%{{time_total}}\\n' '{u}'"
                             for u in urls)
        procs.append(subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    times, failures = [], 0
    for proc in procs:
        out, _ = proc.communicate()
        values = [float(x) for x in out.split()]
        failures += proc.returncode != 0 or len(values) != 2
        times += values
    return time.monotonic() - started, times, failures


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phones", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgepbx-bootstorm-"))
    base = free_port_block(200)
    config = office(work, args.phones, base)
    macs = [f"805ec0{i:06x}" for i in range(args.phones)]
    common = {m: f"y000000000{['108', '096', '107'][i % 3]}.cfg" for i, m in enumerate(macs)}

    service = subprocess.Popen([sys.executable, "-m", "appliance.cli", "provision", "--config", str(config)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert "provisioning ready" in service.stdout.readline()
    time.sleep(0.5)

    # The same files, rendered once, for tftpd-hpa.
    files = work / "tftproot"
    files.mkdir()
    for mac in macs:
        for name in (f"{mac}.cfg", common[mac]):
            if not (files / name).exists():
                got = subprocess.run(["curl", "-s", f"http://127.0.0.1:{base + 31}/{name}"], capture_output=True, check=True)
                (files / name).write_bytes(got.stdout)
    (files / "firmware").mkdir()
    (files / "firmware" / "T46U.rom").write_bytes((work / "firmware" / "T46U.rom").read_bytes())
    hpa_port = base + 40
    hpa = subprocess.Popen(["in.tftpd", "-L", "-s", str(files), "-a", f"127.0.0.1:{hpa_port}"])
    time.sleep(0.5)

    print(f"boot storm: {args.phones} phones at once, each fetching its per-MAC file and a common file "
          f"(curl; TFTP blksize 1428); machine: {os.cpu_count()} cores")
    print(f"{'server':<40} {'all done s':>10} {'p50 ms':>8} {'p95 ms':>8} {'failed':>7}")
    rows = [
        ("edgepbx TFTP (tftpy, rendered)", base + 30, "tftp", True),
        ("tftpd-hpa (pre-rendered files)", hpa_port, "tftp", True),
        ("edgepbx HTTP (rendered)", base + 31, "http", False),
    ]
    for label, port, scheme, blk in rows:
        urls = [[f"{scheme}://127.0.0.1:{port}/{m}.cfg", f"{scheme}://127.0.0.1:{port}/{common[m]}"] for m in macs]
        wall, times, failed = storm(urls, "--tftp-blksize 1428" if blk else "")
        print(f"{label:<40} {wall:10.2f} {pct(times, 50):8.1f} {pct(times, 95):8.1f} {failed:7d}")
    print(f"\nfirmware download, {FIRMWARE_MB} MB over TFTP (one phone):")
    for label, port in (("edgepbx TFTP (tftpy)", base + 30), ("tftpd-hpa", hpa_port)):
        for blksize in ("512", "1428"):
            out = subprocess.run(["curl", "-s", "--tftp-blksize", blksize, "-o", "/dev/null", "-w", "%{time_total}",
                                  f"tftp://127.0.0.1:{port}/firmware/T46U.rom"], capture_output=True, text=True)
            seconds = float(out.stdout or "nan")
            print(f"  {label:<24} blksize {blksize:>4}: {seconds:6.2f} s, {FIRMWARE_MB / seconds:6.2f} MB/s")
    hpa.terminate()
    service.send_signal(signal.SIGTERM)
    service.wait(timeout=10)


if __name__ == "__main__":
    main()
