"""The portal's "call back" request, handed to the feature server on this box.

The feature server takes it on its control socket (the one Kamailio hands REFERs to, open only to
the box's own user) and answers at once whether the user's phone is being rung, or why not.
"""
from __future__ import annotations

import json
import socket

from ..config import Config
from ..kamailio.render import control_socket


def request_call_back(cfg: Config, extension: str, number: str, timeout: float = 5.0) -> tuple[bool, str]:
    """(started, detail): the feature server rings `extension`, then dials `number` for it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("")  # an automatic abstract name: the feature server answers to it
        sock.settimeout(timeout)
        sock.sendto(json.dumps({"callback": {"extension": extension, "number": number}}).encode(),
                    control_socket(cfg).encode("latin-1"))
        answer = json.loads(sock.recv(65536))
        return bool(answer.get("ok")), str(answer.get("detail", ""))
    except (ConnectionRefusedError, FileNotFoundError):
        return False, "the feature server is not running"
    except socket.timeout:
        return False, f"the feature server did not answer in {timeout:.0f} s"
    finally:
        sock.close()
