"""The office's NAT as the box sees it: its public address, and whether the router rewrites SIP.

The public address is network.public_address when the installer set it; otherwise the box learns
it, from a STUN server (network.stun_server, asked at start and every few minutes) or from its SIP
provider's answers (the `received` parameter the provider adds to the box's Via, noted by the edge
in data_dir/nat-state.json, appliance/kamailio/kemi_router.py). The edge advertises it on its
outside face (network.wan_port): in Via, Record-Route and Contact, and in place of the box's LAN
address in the SDP of calls that leave the office, so answers and audio come back through the
router. The supervisor restarts the edge when the learned address changes, once no call is up.

A router's SIP "ALG" rewrites addresses inside SIP messages as they pass, and often breaks calls
(one-way audio, calls that drop, registrations that flap): the edge notices when the Via of an
answer no longer names what it sent, and `edgepbx status` says to turn the ALG off."""
from __future__ import annotations

import ipaddress
import secrets
import socket
import struct

from .config import Config
from .files import read_state_json, write_state_json

# The office's own networks (phones on other subnets and VLANs included): everything else is the
# outside, reached through the router's NAT from the edge's outside face (network.wan_port).
INSIDE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
                   "fc00::/7", "fe80::/10", "::1/128")
STUN_STATE = "stun-state.json"
EDGE_STATE = "nat-state.json"
STUN_EVERY_SECONDS = 300
MAGIC_COOKIE = 0x2112A442


def is_outside(address: str) -> bool:
    """Beyond the office's own networks: a provider, a phone at home (a name counts as inside)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return not any(ip in ipaddress.ip_network(n) for n in INSIDE_NETWORKS)


def edge_state(cfg: Config) -> dict:
    """What the edge saw in its providers' answers: {"received": {...}, "alg": {...}}."""
    return read_state_json(cfg.data_dir / EDGE_STATE)


def stun_state(cfg: Config) -> dict:
    return read_state_json(cfg.data_dir / STUN_STATE)


def learned_public_address(cfg: Config) -> str | None:
    """The STUN server's answer if one is configured and answered, else the provider's view."""
    if cfg.network.stun_server:
        answer = stun_state(cfg).get("address")
        if answer:
            return answer
    seen = edge_state(cfg).get("received") or {}
    address = seen.get("address")
    return address if address and address != cfg.network.bind else None


def public_address_source(cfg: Config) -> tuple[str | None, str]:
    """(the public address, where it comes from) for `edgepbx status`."""
    if cfg.network.public_address:
        return cfg.network.public_address, "network.public_address"
    if cfg.network.stun_server and stun_state(cfg).get("address"):
        return stun_state(cfg)["address"], f"STUN server {cfg.network.stun_server}"
    seen = edge_state(cfg).get("received") or {}
    if seen.get("address") and seen["address"] != cfg.network.bind:
        return seen["address"], f"the answers of {seen.get('from', 'the provider')}"
    return None, "none known: the box talks to the outside from its LAN address"


def stun_binding(server: str, bind: str, timeout: float = 2.0) -> str | None:
    """Asks a STUN server (RFC 5389 Binding request over UDP, from the box's address) which
    address the request came from; None when it does not answer."""
    host, _, port = server.rpartition(":")
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, MAGIC_COOKIE) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, 0))
        sock.settimeout(timeout)
        try:
            sock.sendto(request, (host, int(port)))
            data = sock.recv(2048)
        except OSError:
            return None
    if len(data) < 20 or data[8:20] != transaction or struct.unpack("!H", data[:2])[0] != 0x0101:
        return None
    offset = 20
    while offset + 4 <= len(data):
        kind, length = struct.unpack("!HH", data[offset:offset + 4])
        value = data[offset + 4:offset + 4 + length]
        if kind in (0x0020, 0x0001) and len(value) >= 8 and value[1] == 0x01:  # (XOR-)MAPPED-ADDRESS, IPv4
            raw = struct.unpack("!I", value[4:8])[0]
            if kind == 0x0020:
                raw ^= MAGIC_COOKIE
            return socket.inet_ntoa(struct.pack("!I", raw))
        offset += 4 + length + (-length % 4)
    return None


def refresh_stun(cfg: Config) -> str | None:
    """Asks the configured STUN server and keeps its answer; returns the address (or None)."""
    if not cfg.network.stun_server:
        return None
    address = stun_binding(cfg.network.stun_server, cfg.network.bind)
    if address:
        write_state_json(cfg.data_dir / STUN_STATE, {"address": address, "server": cfg.network.stun_server})
    return address


def alg_warning(cfg: Config) -> str | None:
    """The installer's advice when the edge saw SIP rewritten on the way in, else None."""
    alg = edge_state(cfg).get("alg")
    if not alg:
        return None
    return (f"SIP packets arrive rewritten ({alg.get('detail', 'the Via of an answer was changed')}, "
            f"seen {alg.get('at', '')}): the router in front of the box has a SIP ALG (\"SIP helper\", "
            f"\"SIP passthrough\"); turn it off, it breaks calls")


def nat_status(cfg: Config) -> dict:
    """For `edgepbx status`: the public address, where it comes from, and the ALG warning."""
    address, source = public_address_source(cfg)
    return {"public_address": address, "public_address_from": source, "outside_port": cfg.network.wan_port,
            "alg_warning": alg_warning(cfg)}
