"""A bridged call: an office phone's call to another phone or out over a trunk; also what a
completed transfer becomes. The caller's leg, the callee's leg (the next trunk's when one fails
over), the recorder and the record."""
from __future__ import annotations

import logging
import time

from ..model import CONFIRMED, DISCONNECTED, EARLY, FAILOVER_CODES, Leg, LegState, Target, disposition_for_failure
from ..services import Services
from .base import Call, place_next

log = logging.getLogger("edgepbx.featureserver")


class BridgedCall(Call):
    def __init__(self, services: Services, *, src: str, src_name: str, dst: str, outbound: bool = False):
        super().__init__(services, src=src, src_name=src_name, dst=dst, outbound=outbound)
        self.targets: list[Target] = []
        self.no_answer_deadline: float | None = None

    @classmethod
    def from_phone(cls, services: Services, caller_leg_id: int, *, src: str, src_name: str, dst: str,
                   sip_call_id: str, outbound: bool, dst_number: str | None) -> "BridgedCall":
        """An office phone's INVITE: its record opens now."""
        call = cls(services, src=src, src_name=src_name, dst=dst, outbound=outbound)
        call.caller = services.legs.incoming(caller_leg_id, call, "caller", src, office=True)
        call.cdr_id = services.records.start(direction="outbound" if outbound else "internal", src=src,
                                             src_name=src_name, dst=dst, sip_call_id=sip_call_id,
                                             dst_number=dst_number)
        services.table.add(call)
        return call

    @classmethod
    def adopt(cls, services: Services, caller: Leg, callee: Leg, *, cdr_id: str, dst: str, answered: bool,
              recorder: object | None, recording_path: str | None, targets: list[Target]) -> "BridgedCall":
        """A call made of two legs already up (a completed transfer): `caller` is answered,
        `callee` answered or still ringing; the record `cdr_id` is already open."""
        call = cls(services, src=caller.number, src_name=caller.number, dst=dst, outbound=not callee.office)
        call.caller, call.callee, call.cdr_id = caller, callee, cdr_id
        caller.owner = callee.owner = call
        call.caller_answered = True
        call.targets = targets
        call.recorder, call.recording_path = recorder, recording_path
        if answered:
            call.state = "answered"
        else:
            call.state = "ringing"
            call.no_answer_deadline = time.monotonic() + services.cfg.no_answer_timeout
            call.ringback = services.media.ringback(caller)
        services.table.add(call)
        call.connect_media()
        return call

    # -- call control ---------------------------------------------------------------------

    def reject(self, code: int, disposition: str) -> None:
        self.finish(disposition, code)
        if self.caller is not None:
            self.caller.hangup(code)

    def dial(self, targets: list[Target]) -> None:
        """Places the callee leg on the first target, the next ones being failovers; the caller
        hears ringing once the callee rings."""
        self.targets = list(targets)
        self.no_answer_deadline = time.monotonic() + self.cfg.no_answer_timeout
        self.dial_next()

    def dial_next(self) -> None:
        self.callee = place_next(self.services, self, self.cdr_id, self.targets, self.callee, "callee", self.dst,
                                 self.spent)
        if self.callee is None:
            self.reject(503, "failed")

    def on_timer(self) -> None:
        if self.no_answer_deadline is not None and time.monotonic() >= self.no_answer_deadline:
            self.no_answer_deadline = None
            self.on_no_answer_timeout()
        super().on_timer()

    def abort(self) -> None:
        """The feature server is stopping: end the call and close its record."""
        self.finish("answered" if self.state == "answered" else "failed", 503)
        for leg in self.owned((self.caller, self.callee)):
            leg.hangup(503 if leg is self.caller else 0)

    def hand_off(self) -> None:
        """Ends this call without ending its record: a transfer carries the record (and its
        recording) on in another call with other parties."""
        self.state = "ended"
        self.no_answer_deadline = None
        self.ringback = self.hold_music = self.recorder = None
        self.retire_if_done()

    def on_no_answer_timeout(self) -> None:
        log.info("call %s: %s did not answer in %d s", self.cdr_id, self.dst, self.cfg.no_answer_timeout)
        self.reject(480, "no_answer")
        if self.callee is not None:
            self.callee.hangup()  # CANCEL towards the phone

    def may_be_picked_up(self) -> bool:
        return self.state in ("routing", "ringing") and not self.outbound

    def drop_ringing(self, ringing: Leg | None) -> None:
        self.no_answer_deadline = None
        self.targets = []
        if ringing is not None:
            self.spent.append(ringing)
            ringing.hangup()  # CANCEL: the phone stops ringing

    def on_leg_state(self, leg: Leg, info: LegState) -> None:
        if leg in self.spent or self.state == "ended" or leg.owner is not self:
            self.retire_if_done()  # a failed-over trunk leg, or a leg winding down
            return
        if (self.transfer is not None and info.state == DISCONNECTED
                and self.transfer.party_left(leg, info.code)):
            return  # the transfer went on without this leg
        if leg is self.caller:
            if info.state == DISCONNECTED:
                self.finish("answered" if self.state == "answered" else "cancelled", info.code)
                if self.callee is not None:
                    self.callee.hangup()
            return
        # the callee leg
        if info.state == EARLY and self.state == "routing":
            self.state = "ringing"
            self.answer_caller(180)
            if leg.office:  # now with the ringing leg's Call-ID, for a BLF key's pickup
                self.services.board.ringing(self.cdr_id, [leg.number], {leg.number: info.sip_call_id})
        elif info.state == CONFIRMED and self.state in ("routing", "ringing"):
            self.state = "answered"
            self.services.board.stopped(self.cdr_id)
            self.no_answer_deadline = None
            self.ringback = None
            self.answer_caller(200)
            if self.recorder is None:
                self.start_recording(leg.number if leg.office else None)
            self.services.records.answered(self.cdr_id, self.recording_path, by=leg.number if leg.office else None)
            self.connect_media()
        elif info.state == DISCONNECTED:
            if self.state == "answered":
                self.finish("answered", info.code)
                if self.caller is not None:
                    self.caller.hangup()
            elif self.targets and info.code in FAILOVER_CODES:
                log.warning("call %s: %s answered %d; trying the next trunk", self.cdr_id, info.remote_uri, info.code)
                self.dial_next()
            else:
                code = info.code if info.code >= 300 else 500
                self.reject(code, disposition_for_failure(code))

    # -- end ------------------------------------------------------------------------------

    def finish(self, disposition: str, code: int | None) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self.no_answer_deadline = None
        self.ringback = self.hold_music = None
        if self.transfer is not None:
            self.transfer.abort()
        self.recorder = None  # closing the WAV writes its final header
        self.services.board.stopped(self.cdr_id)
        self.services.records.ended(self.cdr_id, disposition, code,
                                    self.quality_report() if disposition == "answered" else None)
        log.info("call %s %s -> %s ended: %s (%s)", self.cdr_id, self.src, self.dst, disposition, code)
        self.retire_if_done()
