"""The portal's "call back" button: the box rings the user's own phone first and, once they
answer, dials the number as if they had dialled it themselves (their dial plan and permissions,
the office's trunks, a record and a recording like any call they make).

No record is opened until the user answers: a phone nobody picks up is not a call to the
customer, and the portal must not mark the missed call as called back.
"""
from __future__ import annotations

import logging
import time

from ...dialplan import Route
from ..model import CONFIRMED, DISCONNECTED, Leg, LegState, Target
from ..services import Services
from .bridged import BridgedCall

log = logging.getLogger("edgepbx.featureserver")


class CallBack(BridgedCall):
    def __init__(self, services: Services, extension: str, route: Route, targets: list[Target]):
        """Rings `extension`'s phone; raises DialError when it cannot."""
        super().__init__(services, src=extension, src_name=extension, dst=route.dialled,
                         outbound=route.klass not in ("internal", "feature"))
        self.state = "calling_user"  # -> routing -> ringing -> answered -> ended, as any call
        self.route = route
        self.waiting_targets = targets
        user = services.reach.phone(extension, route.dialled, route.dialled)
        # The phone shows whom it is about to call.
        user.from_uri = f'"Call back {route.dialled}" <sip:{route.dialled}@{services.cfg.domain}>'
        self.caller = services.legs.outgoing(user.account, self, "caller", extension, office=True)
        self.caller_answered = True  # once it is up: the call never answers this leg itself
        self.no_answer_deadline = time.monotonic() + services.cfg.no_answer_timeout
        self.caller.dial(user)
        services.table.add(self)

    def on_leg_state(self, leg: Leg, info: LegState) -> None:
        if self.state != "calling_user" or leg is not self.caller:
            super().on_leg_state(leg, info)
            return
        if info.state == CONFIRMED:
            external = self.outbound
            self.cdr_id = self.services.records.start(
                direction="outbound" if external else "internal", src=self.src, src_name=self.src_name,
                dst=self.dst, sip_call_id=info.sip_call_id, dst_number=self.route.number if external else None)
            log.info("call %s: %s answered the call back; dialling %s", self.cdr_id, self.src, self.dst)
            self.state = "routing"
            self.ringback = self.services.media.ringback(self.caller)
            if not external:
                self.services.board.ringing(self.cdr_id, [self.route.number])
            self.dial(self.waiting_targets)
        elif info.state == DISCONNECTED:
            log.info("call back to %s: extension %s did not answer (%d)", self.dst, self.src, info.code)
            self.end_unanswered()

    def on_media(self) -> None:
        if self.state in ("routing", "ringing") and self.ringback is None and self.caller is not None:
            self.ringback = self.services.media.ringback(self.caller)  # the user hears the far end ring
        super().on_media()

    def on_no_answer_timeout(self) -> None:
        if self.state != "calling_user":
            super().on_no_answer_timeout()
            return
        log.info("call back to %s: extension %s did not answer in %d s", self.dst, self.src,
                 self.cfg.no_answer_timeout)
        self.end_unanswered()
        self.caller.hangup()  # CANCEL: the phone stops ringing

    def abort(self) -> None:
        if self.state == "calling_user":
            self.end_unanswered()
            self.caller.hangup()
            return
        super().abort()

    def end_unanswered(self) -> None:
        self.state = "ended"
        self.no_answer_deadline = None
        self.retire_if_done()

