"""SIP multicast plug-and-play: phones (Yealink, Snom, Polycom, Fanvil...) SUBSCRIBE to
sip:<MAC>@224.0.1.75:5060 with Event: ua-profile; the box answers 200 and NOTIFYs the phone's
Contact with its provisioning URL. The URL holds no secrets, so any phone gets it; the request is
also noted as a discovery (MAC, vendor, IP).
"""
from __future__ import annotations

import logging
import re
import secrets
import socket
import threading
from urllib.parse import unquote

from appliance.config import Config

from .catalog import vendor_by_hint, vendor_by_oui
from .dhcp import provisioning_url
from .macs import normalise_mac
from .registry import Registry

log = logging.getLogger("edgepbx.provisioning")
PNP_GROUP, PNP_PORT = "224.0.1.75", 5060


def _header(message: str, name: str, compact: str | None = None) -> str | None:
    names = name if compact is None else f"(?:{name}|{compact})"
    found = re.search(rf"^{names}\s*:\s*(.*?)\r?$", message, re.IGNORECASE | re.MULTILINE)
    return found.group(1).strip() if found else None


class PnpResponder:
    def __init__(self, cfg: Config, registry: Registry, port: int = PNP_PORT):
        self.cfg, self.registry, self.port = cfg, registry, port
        self.url = provisioning_url(cfg)
        self.stopped = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Only the group joined on our interface below: Linux would otherwise hand this socket the
        # PnP requests of every interface where any other program joined the group.
        self.sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_MULTICAST_ALL", 49), 0)
        self.sock.bind((PNP_GROUP, port))
        membership = socket.inet_aton(PNP_GROUP) + socket.inet_aton(cfg.network.bind)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        self.sock.settimeout(0.5)
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.bind((cfg.network.bind, 0))

    def serve_forever(self) -> None:
        while not self.stopped.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.handle(data.decode("utf-8", errors="replace"), source)
            except Exception:
                log.exception("provisioning: bad PnP request from %s", source[0])

    def handle(self, message: str, source: tuple[str, int]) -> None:
        request_line = message.split("\r\n", 1)[0]
        event = _header(message, "Event", "o") or ""
        if not request_line.startswith("SUBSCRIBE ") or not event.lower().startswith("ua-profile"):
            return
        user = re.search(r"sips?:([^@;>\s]+)@", request_line)
        # Phones write the user part as "MAC%3A805EC0112233", "MAC805EC0112233" or the bare MAC.
        raw = unquote(user.group(1)) if user else ""
        mac = normalise_mac(re.sub(r"^mac:?", "", raw, flags=re.IGNORECASE))
        vendor_param = re.search(r'vendor="?([^";]+)', event)
        vendor = (vendor_by_hint(vendor_param.group(1)) if vendor_param else None) or (vendor_by_oui(mac) if mac else None)
        if mac:
            self.registry.record_discovery(mac, source[0], vendor.name if vendor else None, None)
        via, frm, to = _header(message, "Via", "v"), _header(message, "From", "f"), _header(message, "To", "t")
        call_id, cseq = _header(message, "Call-ID", "i"), _header(message, "CSeq")
        contact = _header(message, "Contact", "m")
        if not all((via, frm, to, call_id, cseq, contact)):
            return
        tag = secrets.token_hex(6)
        ok = (f"SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {frm}\r\nTo: {to};tag={tag}\r\nCall-ID: {call_id}\r\n"
              f"CSeq: {cseq}\r\nExpires: 0\r\nContact: <sip:{self.cfg.network.bind}:{self.port}>\r\nContent-Length: 0\r\n\r\n")
        self.out.sendto(ok.encode(), source)
        target = re.search(r"sips?:(?:[^@;>]+@)?([^;>:\s]+)(?::(\d+))?", contact)
        if not target:
            return
        host, port = target.group(1), int(target.group(2) or 5060)
        body = self.url + "\r\n"
        notify = (f"NOTIFY {contact.strip('<>').split(';')[0]} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP {self.cfg.network.bind}:{self.out.getsockname()[1]};branch=z9hG4bK{secrets.token_hex(8)}\r\n"
                  f"From: {to};tag={tag}\r\nTo: {frm}\r\nCall-ID: {call_id}\r\nCSeq: 1 NOTIFY\r\nMax-Forwards: 70\r\n"
                  f"Event: ua-profile\r\nSubscription-State: terminated;reason=timeout\r\n"
                  f"Content-Type: application/url\r\nContent-Length: {len(body)}\r\n\r\n{body}")
        self.out.sendto(notify.encode(), (host, port))
        log.info("provisioning: PnP %s (%s) at %s told %s", mac or "?", vendor.name if vendor else "unknown vendor",
                 source[0], self.url)

    def stop(self) -> None:
        self.stopped.set()
