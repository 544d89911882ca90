"""A slow, jittery internet line for the NAT lab's RTP, in user space.

`tc netem` is what one would use, but this machine's kernel has no netem (CONFIG_NET_SCH_NETEM is
not set, and it loads no modules). So, inside a lab router's namespace, this process takes the
UDP packets of a port range off the kernel's forwarding (an nftables drop in the forward hook; a
packet socket still sees them) and forwards them itself between two interfaces, each packet after
its own delay: DELAY_MS plus normal jitter of JITTER_MS, in each direction, as netem's
`delay D J distribution normal` does (packets may overtake each other, as there). Everything else
(SIP, other traffic) the kernel forwards as before.

    ip netns exec NS python tests/slow_line.py IFACE_A PEER_MAC_A IFACE_B PEER_MAC_B FIRST LAST DELAY_MS JITTER_MS

PEER_MAC_X is the MAC of the host at the other end of IFACE_X (the next hop that way). It prints
"ready" once forwarding, and on SIGTERM removes its rule and exits.
"""
from __future__ import annotations

import heapq
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
TABLE = "slow_line"


def mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def ports(frame: bytes) -> tuple[int, int] | None:
    """The UDP ports of an Ethernet/IPv4 frame, or None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    start = 14 + (frame[14] & 0x0F) * 4
    if len(frame) < start + 4 or struct.unpack("!H", frame[20:22])[0] & 0x1FFF:  # a later fragment: no ports
        return None
    return struct.unpack("!HH", frame[start:start + 4])


def main() -> None:
    iface_a, peer_a, iface_b, peer_b, first, last, delay_ms, jitter_ms = sys.argv[1:9]
    first_port, last_port = int(first), int(last)
    delay, jitter = float(delay_ms) / 1000, float(jitter_ms) / 1000
    sockets = {}
    for iface in (iface_a, iface_b):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        sock.bind((iface, 0))
        sockets[iface] = sock
    own_mac = {iface: sock.getsockname()[4] for iface, sock in sockets.items()}
    onward = {iface_a: (iface_b, mac_bytes(peer_b)), iface_b: (iface_a, mac_bytes(peer_a))}
    subprocess.run(["nft", "-f", "-"], check=True, text=True, input=(
        f"table inet {TABLE} {{\n  chain forward {{\n    type filter hook forward priority -10;\n"
        f"    udp dport {first_port}-{last_port} drop\n    udp sport {first_port}-{last_port} drop\n  }}\n}}\n"))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    due: list[tuple[float, int, str, bytes]] = []
    count = 0
    print("ready", flush=True)
    try:
        while not stopping:
            timeout = max(0.0, min(0.05, due[0][0] - time.monotonic())) if due else 0.05
            readable, _, _ = select.select(list(sockets.values()), [], [], timeout)
            for sock in readable:
                frame, address = sock.recvfrom(65535)
                if address[2] == PACKET_OUTGOING:
                    continue  # what this process (or the kernel) sent out of the interface
                udp = ports(frame)
                if udp is None or not (first_port <= udp[0] <= last_port or first_port <= udp[1] <= last_port):
                    continue  # the kernel forwards it
                out, next_hop = onward[address[0]]
                count += 1
                # A packet read off a veth may carry a checksum its sender left to "the hardware"
                # (never filled in); 0 is IPv4 UDP's "no checksum", which every stack accepts.
                udp_at = 14 + (frame[14] & 0x0F) * 4
                frame = next_hop + own_mac[out] + frame[12:udp_at + 6] + b"\0\0" + frame[udp_at + 8:]
                heapq.heappush(due, (time.monotonic() + max(0.0, random.gauss(delay, jitter)), count, out, frame))
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, _, out, frame = heapq.heappop(due)
                sockets[out].send(frame)
    finally:
        subprocess.run(["nft", "delete", "table", "inet", TABLE], check=False)


if __name__ == "__main__":
    main()
