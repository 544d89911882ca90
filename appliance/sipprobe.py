"""A minimal SIP OPTIONS ping: is something answering SIP on host:port?"""
from __future__ import annotations

import secrets
import socket


def options_ping(host: str, port: int, timeout: float = 0.5) -> int | None:
    """Sends one OPTIONS over UDP; returns the response's status code, or None on silence."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.bind((host, 0))
        local_port = sock.getsockname()[1]
        tag = secrets.token_hex(6)
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{local_port};rport;branch=z9hG4bK{tag}\r\n"
            f"From: <sip:probe@{host}>;tag={tag}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: probe-{tag}@{host}\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nUser-Agent: edgepbx-probe\r\nContent-Length: 0\r\n\r\n"
        )
        try:
            sock.sendto(request.encode(), (host, port))
            data = sock.recv(4096)
        except OSError:
            return None
    parts = data.split(b" ", 2)
    if len(parts) >= 2 and parts[0] == b"SIP/2.0" and parts[1].isdigit():
        return int(parts[1])
    return None
