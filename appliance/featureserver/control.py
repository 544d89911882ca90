"""Requests from the box's own processes on the feature server's abstract Unix datagram socket:
REFERs and phones' voice quality reports handed over by Kamailio, and the portal's call-back
requests from the cloud agent (answered to the sender). An abstract socket has no file
permissions, so the sender's credentials come along (SO_PASSCRED) and a datagram from any other
user is dropped."""
from __future__ import annotations

import json
import logging
import os
import socket
import struct

from ..config import Config
from ..kamailio.render import control_socket
from .intake import Intake

log = logging.getLogger("edgepbx.featureserver")


def sender_uid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= 12:
            return struct.unpack("3i", data[:12])[1]  # pid, uid, gid
    return None


class ControlSocket:
    def __init__(self, cfg: Config):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # the sender's uid comes along
        self.sock.bind(control_socket(cfg).encode("latin-1"))
        self.sock.setblocking(False)

    def read(self, intake: Intake) -> None:
        """Handles every datagram waiting (library thread)."""
        while True:
            try:
                data, ancillary, _flags, sender = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                return
            uid = sender_uid(ancillary)
            if uid != os.getuid():
                log.warning("ignoring a control request from uid %s: only the box's own services may send them", uid)
                continue
            try:
                request = json.loads(data)
                if "phone_report" in request:
                    intake.phone_report(str(request["phone_report"]["extension"]), str(request["phone_report"]["body"]))
                elif "callback" in request:
                    ok, detail = intake.call_back(str(request["callback"]["extension"]),
                                                  str(request["callback"]["number"]))
                    self.answer(sender, {"ok": ok, "detail": detail})
                else:
                    intake.refer(str(request["call_id"]), str(request["refer_to"]), str(request.get("cseq", "")))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring a malformed control request: %s", exc)
            except Exception:
                log.exception("control request failed")

    def answer(self, sender: object, answer: dict) -> None:
        if not sender:
            return  # an unnamed sender expects no answer
        try:
            self.sock.sendto(json.dumps(answer).encode(), sender)
        except OSError as exc:
            log.warning("could not answer a control request: %s", exc)
