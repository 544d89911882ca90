"""Phones from the fleet: the list the heartbeat carries, and the operator's "re-fetch your
config" / "reboot" sent to a phone as the SIP NOTIFY its vendor understands.

The NOTIFY goes through Kamailio (which relays it to where the phone registered from, through its
NAT binding); Kamailio takes it only with the box token from routing.json (mode 0600).
"""
from __future__ import annotations

import json
import secrets
import socket
import time

from ..config import Config

ACTIONS = ("resync", "reboot")
PHONE_FIELDS = ("mac", "vendor", "model", "extension", "configured", "registered", "registered_from",
                "registered_since", "ip", "user_agent", "firmware")


def phone_list(cfg: Config) -> list[dict]:
    """What `edgepbx devices` shows, without anything secret, for the portal's fleet view."""
    from provisioning.status import device_rows

    phones = []
    for row in device_rows(cfg):
        phone = {k: row.get(k) for k in PHONE_FIELDS}
        phone["last_fetch_at"] = row["last_fetch"]["at"] if row.get("last_fetch") else None
        phones.append(phone)
    return phones


def notify_event(vendor: str | None, action: str) -> str:
    from provisioning.catalog import catalog

    known = catalog().get(vendor or "")
    events = known.notify if known else {"resync": "check-sync;reboot=false", "reboot": "check-sync;reboot=true"}
    return events[action]


def send_notify(cfg: Config, extension: str, event: str, timeout: float = 8.0) -> tuple[int | None, str]:
    """Sends the NOTIFY via Kamailio and waits for the phone's final answer: (code, reason), or
    (None, why) when nothing came back."""
    routing = json.loads((cfg.data_dir / "kamailio" / "routing.json").read_text())
    net = cfg.network
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((net.bind, 0))
        port = sock.getsockname()[1]
        call_id = f"{secrets.token_hex(8)}@{net.bind}"
        message = (
            f"NOTIFY sip:{extension}@{cfg.domain} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {net.bind}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:provisioning@{cfg.domain}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{extension}@{cfg.domain}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 NOTIFY\r\n"
            f"Contact: <sip:provisioning@{net.bind}:{port}>\r\n"
            f"Event: {event}\r\n"
            "Subscription-State: terminated\r\n"
            f"X-Edgepbx-Box: {routing['box_token']}\r\n"
            "User-Agent: edgepbx\r\n"
            "Content-Length: 0\r\n\r\n").encode()
        deadline = time.monotonic() + timeout
        resend_at, interval = 0.0, 0.5
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now >= resend_at:  # UDP: resend (RFC 3261 timer E) until a final answer
                sock.sendto(message, (net.bind, net.sip_port))
                resend_at, interval = now + interval, min(4.0, interval * 2)
            sock.settimeout(max(0.05, min(resend_at, deadline) - time.monotonic()))
            try:
                data = sock.recv(65535)
            except socket.timeout:
                continue
            status = data.split(b"\r\n", 1)[0].decode(errors="replace").split(" ", 2)
            if len(status) >= 2 and status[0] == "SIP/2.0" and status[1].isdigit() and int(status[1]) >= 200:
                return int(status[1]), status[2] if len(status) > 2 else ""
        return None, f"no answer in {timeout:.0f} s"
    finally:
        sock.close()
