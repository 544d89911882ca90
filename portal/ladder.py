"""A SIP ladder of a capture (issue 27): who sent which request or answer to whom, call by call,
read from the pcap the box uploaded, so that an operator sees "the 200 never got its ACK"
without opening Wireshark.

Only packets that hold "SIP/2.0" are dissected (scapy's raw reader skips the RTP, most of a
capture's bytes); SIP over TLS stays unreadable, as it should. A pcap that scapy cannot read
gives no ladder rather than an error page: the .pcap download still works."""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

MAX_MESSAGES = 2000  # a page an operator can read; the .pcap holds the rest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SipMessage:
    at_ms: int  # since the capture's first packet
    source: str  # address:port
    target: str
    first_line: str  # "INVITE sip:102@…" or "SIP/2.0 200 OK"
    call_id: str


@dataclass
class Call:
    call_id: str
    parties: list[str] = field(default_factory=list)  # columns, in order of first appearance
    messages: list[SipMessage] = field(default_factory=list)


def sip_messages(pcap: bytes) -> list[SipMessage]:
    """The SIP messages in a pcap (UDP and TCP), in capture order; [] if it cannot be read."""
    from scapy.config import conf  # slow to import: only when a ladder is asked for
    from scapy.error import Scapy_Exception
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import RawPcapReader

    found: list[SipMessage] = []
    try:
        reader = RawPcapReader(io.BytesIO(pcap))
        layer = conf.l2types.num2layer.get(reader.linktype)
        first = None
        for data, meta in reader:
            when = meta.sec + meta.usec / 1_000_000
            first = when if first is None else first
            if b"SIP/2.0" not in data or layer is None:
                continue
            packet = layer(data)
            ip = packet.getlayer(IP) or packet.getlayer(IPv6)
            transport = packet.getlayer(UDP) or packet.getlayer(TCP)
            if ip is None or transport is None:
                continue
            message = _parse(bytes(transport.payload))
            if message is None:
                continue
            first_line, call_id = message
            found.append(SipMessage(int((when - first) * 1000), f"{ip.src}:{transport.sport}",
                                    f"{ip.dst}:{transport.dport}", first_line, call_id))
            if len(found) >= MAX_MESSAGES:
                break
    except (Scapy_Exception, EOFError, ValueError, OSError) as exc:  # a pcap cut short or not one
        log.warning("capture unreadable for a ladder: %s", exc)
    return found


def _parse(payload: bytes) -> tuple[str, str] | None:
    """(first line, Call-ID) of a SIP message, or None if the payload is not one."""
    head = payload.split(b"\r\n\r\n", 1)[0].decode("utf-8", errors="replace")
    lines = head.split("\r\n")
    first = lines[0].strip()
    if not (first.startswith("SIP/2.0 ") or first.endswith(" SIP/2.0")):
        return None
    call_id = next((value.strip() for name, sep, value in (line.partition(":") for line in lines[1:])
                    if sep and name.strip().lower() in ("call-id", "i")), "")
    return first[:120], call_id[:200]


def calls(messages: list[SipMessage]) -> list[Call]:
    """The messages grouped by Call-ID, calls in order of their first message."""
    by_id: dict[str, Call] = {}
    for message in messages:
        call = by_id.setdefault(message.call_id, Call(message.call_id))
        for party in (message.source, message.target):
            if party not in call.parties:
                call.parties.append(party)
        call.messages.append(message)
    return list(by_id.values())
