"""`edgepbx capture`: N seconds of the box's SIP and RTP into a pcap file (Wireshark opens it),
for an operator's remote diagnostics (appliance/cloud/diagnostics.py) or an installer on site.

tcpdump (Debian's) on every interface ("any": the LAN and the box's own loopback), filtered in
the kernel to the box's SIP ports (the edge's UDP/TCP, TLS and outside ports, the feature
server's) and its RTP range, each packet written as it comes (a capture never sits in memory),
stopped at its seconds or its size cap, whichever comes first. The clock starts when tcpdump
says it listens, so nothing from before is in it. Needs CAP_NET_RAW (the image's service has
it). scapy, which the box also carries, lost most of a 100-packet-a-second stream through
libpcap's TPACKET_V3 here (3 of 20 packets), so it is not used for this."""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .config import Config

MAX_SECONDS = 120
MAX_BYTES = 15 << 20  # stops here; the portal takes 16 MiB (a tenth of a second more fits)
START_TIMEOUT = 10.0


class CaptureFailed(Exception):
    pass


@dataclass
class Captured:
    packets: int
    size: int
    seconds: float
    stopped_by: str  # "time" or "size"


def capture_filter(cfg: Config) -> str:
    net = cfg.network
    ports = sorted({p for p in (net.sip_port, net.tls_port, net.wan_port, net.feature_port) if p})
    low, high = net.rtp_ports
    return "(udp or tcp) and (" + " or ".join(f"port {p}" for p in ports) + f" or portrange {low}-{high})"


def capture(cfg: Config, seconds: float, output: Path, max_bytes: int = MAX_BYTES) -> Captured:
    seconds = max(1.0, min(float(seconds), MAX_SECONDS))
    output.parent.mkdir(parents=True, exist_ok=True)
    as_root = ["-Z", "root"] if os.geteuid() == 0 else []  # root's tcpdump would drop to a user that cannot write here
    try:
        proc = subprocess.Popen(["tcpdump", "-i", "any", "-n", "-s", "0", "-U", "-w", str(output), *as_root,
                                 capture_filter(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise CaptureFailed(f"cannot start tcpdump: {exc}") from None
    said = b""
    deadline = time.monotonic() + START_TIMEOUT
    while b"listening on" not in said:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise CaptureFailed(f"tcpdump did not start: {(said + proc.stderr.read()).decode(errors='replace')[-300:]}")
        if select.select([proc.stderr], [], [], 0.2)[0]:
            said += os.read(proc.stderr.fileno(), 4096)
    started = time.monotonic()
    stopped_by = "time"
    while time.monotonic() - started < seconds and proc.poll() is None:
        if output.exists() and output.stat().st_size >= max_bytes:
            stopped_by = "size"
            break
        time.sleep(0.05)
    took = time.monotonic() - started
    proc.send_signal(signal.SIGINT)  # tcpdump writes what it holds and says how many it captured
    try:
        _, rest = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, rest = proc.communicate()
    counted = re.search(rb"(\d+) packets? captured", said + rest)
    return Captured(int(counted.group(1)) if counted else 0, output.stat().st_size if output.exists() else 0,
                    round(took, 1), stopped_by)
