"""The portal's "call back" button: the box rings the user's own phone first and, once they
answer, dials the number as if they had dialled it themselves (their dial plan and permissions,
the office's trunks, a record and a recording like any call they make).

No record is opened until the user answers: a phone nobody picks up is not a call to the
customer, and the portal must not mark the missed call as called back.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import pjsua2 as pj

from ..dialplan import Route
from .b2bua import CallPair, Leg, Target, ringback_to, safe_hangup

if TYPE_CHECKING:
    from .server import FeatureServer

log = logging.getLogger(__name__)


class CallBack(CallPair):
    def __init__(self, server: "FeatureServer", extension: str, route: Route, targets: list[Target]):
        external = route.klass not in ("internal", "feature")
        self._setup(server, extension, extension, route.dialled, external)
        self.state = "calling_user"  # -> routing -> ringing -> answered -> ended, as any call
        self.cdr_id = ""
        self.route = route
        self.waiting_targets = targets
        user = server.phone_target(extension, route.dialled, route.dialled)
        self.caller = Leg(user.account, self, "caller", number=extension, office=True)
        self.caller_answered = True  # once it is up: the pair never answers this leg itself
        self.no_answer_deadline = time.monotonic() + server.cfg.no_answer_timeout
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        # The phone shows whom it is about to call.
        prm.txOption.localUri = f'"Call back {route.dialled}" <sip:{route.dialled}@{server.cfg.domain}>'
        self.caller.makeCall(user.uri, prm)

    def on_leg_state(self, leg: Leg, info: pj.CallInfo) -> None:
        if self.state != "calling_user" or leg is not self.caller:
            super().on_leg_state(leg, info)
            return
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            external = self.direction_out
            self.cdr_id = self.server.cdr_start(direction="outbound" if external else "internal", src=self.src,
                                                src_name=self.src_name, dst=self.dst, sip_call_id=info.callIdString,
                                                dst_number=self.route.number if external else None)
            log.info("call %s: %s answered the call back; dialling %s", self.cdr_id, self.src, self.dst)
            self.state = "routing"
            self.ringback = ringback_to(self.caller)
            if not external:
                self.server.board.ringing(self.cdr_id, [self.route.number])
            self.dial(self.waiting_targets)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            log.info("call back to %s: extension %s did not answer (%d)", self.dst, self.src, info.lastStatusCode)
            self.end_unanswered()

    def on_media(self) -> None:
        if self.state in ("routing", "ringing") and self.ringback is None:
            self.ringback = ringback_to(self.caller)  # the user hears the far end ring
        super().on_media()

    def on_no_answer_timeout(self) -> None:
        if self.state != "calling_user":
            super().on_no_answer_timeout()
            return
        log.info("call back to %s: extension %s did not answer in %d s", self.dst, self.src,
                 self.server.cfg.no_answer_timeout)
        self.end_unanswered()
        safe_hangup(self.caller)  # CANCEL: the phone stops ringing

    def abort(self) -> None:
        if self.state == "calling_user":
            self.end_unanswered()
            safe_hangup(self.caller)
            return
        super().abort()

    def end_unanswered(self) -> None:
        self.state = "ended"
        self.no_answer_deadline = None
        self.server.retire_if_done(self)
