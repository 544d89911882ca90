"""Attended transfer by DTMF, as in the memo: during a call an office phone presses `#`
(features.transfer_key) and dials an extension or number (ended by `#` or a pause of
features.transfer_digit_timeout seconds); the other party hears music on hold meanwhile.
Hanging up hands the held party to the target; `*` (features.transfer_cancel_key), a busy or
unanswered target, or a failed dial bring the held party back. If the held party hangs up, the
consultation call goes on as an ordinary call.

A Transfer lives inside the call that holds both parties (a CallPair or an InboundCall, "the
call") on the feature server's library thread; the target's leg is a third leg of that call.
Records: the consultation call gets its own CDR (src = the transferring phone,
linked_id = the call's record); on completion the call's record gets `transferred_to` and ends,
and the consultation record goes on with the held party and the target.
"""
from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING
from urllib.parse import unquote

import pjsua2 as pj

from .b2bua import (FAILOVER_CODES, CallPair, Leg, MusicOnHold, Target, active_audio, bridge,
                    disposition_for_failure, music_on_hold, release_after_outcome, ringback_to, safe_hangup,
                    send_transfer_outcome, unbridge)
from .limits import outside_call_refusal

if TYPE_CHECKING:
    from .server import FeatureServer

log = logging.getLogger(__name__)


class Transfer:
    def __init__(self, call, transferor: Leg, held: Leg):
        self.call = call
        self.server: FeatureServer = call.server
        self.features = self.server.cfg.features
        self.transferor, self.held = transferor, held
        self.state = "dialling"  # dialling -> ringing -> talking; the call's `transfer` is None after
        self.digits = ""
        self.src, self.dst = transferor.number, ""  # the consultation's, for its recording's file name
        self.deadline: float | None = time.monotonic() + self.features.transfer_digit_timeout * 3
        self.target: Leg | None = None
        self.targets: list[Target] = []
        self.cdr_id: str | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.recording_path: str | None = None
        self.ringback: pj.ToneGenerator | None = None
        self.spent: list[Leg] = []
        unbridge(transferor, held)
        self.stop_recording_of(transferor)
        self.music: MusicOnHold | None = self.start_music()
        log.info("call %s: %s started a transfer; %s on hold", call.cdr_id, transferor.number, held.number)

    @classmethod
    def start_if_asked(cls, call, leg: Leg, digit: str, *legs: Leg) -> "Transfer | None":
        """A Transfer if `digit` is the transfer key from an office phone of the call, else None.
        Outside parties cannot transfer: it would let them dial out at the office's expense. An
        office may keep # for the IVRs it calls (features.transfer_in_outbound_calls: false)."""
        features = call.server.cfg.features
        if digit != features.transfer_key or not leg.office or leg not in legs:
            return None
        if getattr(call, "direction_out", False) and not features.transfer_in_outbound_calls:
            return None
        held = next(other for other in legs if other is not leg)
        return cls(call, leg, held)

    # -- media ------------------------------------------------------------------------------

    def start_music(self) -> MusicOnHold | None:
        self.call.hold_music = None  # the transfer's own music replaces any for a phone's hold
        return music_on_hold(self.server, self.held)

    def stop_recording_of(self, leg: Leg) -> None:
        """The call's recording keeps the held party; the consultation goes into its own."""
        audio = active_audio(leg)
        if audio is not None and self.call.recorder is not None:
            try:
                audio.stopTransmit(self.call.recorder)
            except pj.Error:
                pass

    def on_media(self) -> None:
        if self.state == "talking" and self.target is not None:
            bridge(self.transferor, self.target, self.recorder)

    # -- digits and timers --------------------------------------------------------------------

    def on_dtmf(self, leg: Leg, digit: str) -> None:
        log.debug("call %s: transfer digit %r from %s", self.call.cdr_id, digit, leg.number)
        if leg is not self.transferor:
            return
        if digit == self.features.transfer_cancel_key:
            self.cancel("cancelled by the transferring phone", "cancelled")
        elif self.state != "dialling":
            return
        elif digit in ("#", self.features.transfer_key):
            self.dial() if self.digits else self.cancel("no number dialled", None)
        else:
            self.digits += digit
            self.deadline = time.monotonic() + self.features.transfer_digit_timeout

    def on_timer(self) -> None:
        if self.deadline is None or time.monotonic() < self.deadline:
            return
        self.deadline = None
        if self.state == "dialling":
            self.dial() if self.digits else self.cancel("no number dialled", None)
        elif self.state == "ringing":
            self.cancel(f"{self.digits} did not answer", "no_answer")

    # -- the consultation call --------------------------------------------------------------

    def dial(self) -> None:
        server = self.server
        route = server.dialplan.route(self.digits, self.transferor.number)
        external = route.klass not in ("internal", "feature", "denied")
        if route.klass == "internal" and route.number not in (self.transferor.number, self.held.number):
            name = next((e.name for e in server.cfg.extensions if e.number == self.transferor.number),
                        self.transferor.number)
            self.targets = [server.phone_target(route.number, self.transferor.number, name)]
        elif external:
            refusal = outside_call_refusal(server, self.transferor.number)
            if refusal:
                self.cancel(f"cannot transfer to {self.digits!r}: {refusal}", None)
                return
            self.targets = server.trunk_targets(route.number, route.trunks)
        if not self.targets:
            self.cancel(f"cannot transfer to {self.digits!r}: {route.reason or route.klass}", None)
            return
        self.cdr_id = server.cdr_start(direction="outbound" if external else "internal", src=self.transferor.number,
                                       src_name=self.transferor.number, dst=self.digits, sip_call_id="",
                                       dst_number=route.number if external else None, linked_id=self.call.cdr_id)
        self.dst = self.digits
        self.state = "ringing"
        self.deadline = time.monotonic() + server.cfg.no_answer_timeout
        self.ringback = ringback_to(self.transferor)
        log.info("call %s: transfer by %s to %s (record %s)", self.call.cdr_id, self.transferor.number,
                 self.digits, self.cdr_id)
        self.dial_next()

    def dial_next(self) -> None:
        while self.targets:
            target = self.targets.pop(0)
            if self.target is not None:
                self.spent.append(self.target)
            self.target = Leg(target.account, self, "target", number=target.number or self.digits,
                              office=target.trunk is None)
            if target.trunk:
                self.server.cdr_trunk(self.cdr_id, target.trunk)
            prm = pj.CallOpParam(True)
            prm.opt.audioCount, prm.opt.videoCount = 1, 0
            prm.txOption.localUri = target.from_uri
            try:
                self.target.makeCall(target.uri, prm)
                return
            except pj.Error as exc:  # e.g. no RTP port free
                log.error("call %s: transfer cannot dial %s: %s", self.call.cdr_id, target.uri, exc.info())
                self.target.disconnected = True
        self.cancel(f"no line free to reach {self.digits}", "failed")

    def legs(self) -> list[Leg]:
        return self.spent + ([self.target] if self.target is not None else [])

    def on_leg_state(self, leg: Leg, info: pj.CallInfo) -> None:
        if leg is not self.target:  # a failed-over trunk leg winding down
            return
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.state == "ringing":
            self.state = "talking"
            self.deadline = None
            self.ringback = None
            CallPair.start_recording(self)  # same files and failure handling as any call
            self.server.cdr_answered(self.cdr_id, self.recording_path)
            self.on_media()
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            code = info.lastStatusCode
            if self.state == "talking":
                self.cancel(f"{self.digits} hung up", "answered", code)
            elif self.targets and code in FAILOVER_CODES:
                self.dial_next()
            else:
                self.cancel(f"{self.digits} answered {code}", disposition_for_failure(code) if code >= 300
                            else "no_answer", code)

    # -- endings ----------------------------------------------------------------------------

    def cancel(self, why: str, disposition: str | None, code: int | None = None) -> None:
        """Back to the call as it was: the target's leg goes, the held party hears the transferor."""
        log.info("call %s: transfer ended (%s); %s back with %s", self.call.cdr_id, why, self.held.number,
                 self.transferor.number)
        self.close(disposition, code)
        call = self.call
        call.transfer = None
        if active_audio(self.transferor) is not None and active_audio(self.held) is not None:
            bridge(self.transferor, self.held, call.recorder)

    def close(self, disposition: str | None, code: int | None) -> None:
        """Ends the consultation: its leg hangs up, its record closes, music and tones stop."""
        self.deadline = None
        self.music = self.ringback = None
        self.recorder = None
        legs = self.legs()
        self.target = None
        self.hand_back(legs)
        for leg in legs:
            safe_hangup(leg)
        if self.cdr_id is not None and disposition is not None:
            answered = self.state == "talking"  # a consultation that took place, whoever ended it
            self.server.cdr_ended(self.cdr_id, "answered" if answered else disposition, code)

    def hand_back(self, legs: list[Leg]) -> None:
        """Legs winding down become the call's: it is retired only once they are gone."""
        for leg in legs:
            leg.pair = self.call
            self.call.spent.append(leg)

    def abort(self) -> None:
        """The call ends for good (shutdown, or both parties gone)."""
        if self.call.transfer is self:
            self.call.transfer = None
            self.close("answered" if self.state == "talking" else "cancelled", None)

    def party_left(self, leg: Leg, code: int) -> bool:
        """The transferor or the held party hung up. Returns True when the consultation goes on
        without them (the call's record ends here), False when the call should end as usual."""
        if leg not in (self.transferor, self.held) or self.target is None:
            self.abort()
            return False
        other = self.held if leg is self.transferor else self.transferor
        call = self.call
        call.transfer = None
        if leg is self.transferor:
            log.info("call %s: %s hung up: %s transferred to %s", call.cdr_id, leg.number, other.number, self.digits)
            self.server.cdr_transferred(call.cdr_id, self.digits)
        else:
            log.info("call %s: held party %s hung up; %s goes on with %s", call.cdr_id, leg.number, other.number,
                     self.digits)
        self.music = self.ringback = None
        CallPair.adopt(self.server, other, self.target, cdr_id=self.cdr_id, dst=self.digits,
                       answered=self.state == "talking", recorder=self.recorder,
                       recording_path=self.recording_path, targets=self.targets)
        call.finish("answered", code)  # after the hand-over: the call hangs up only its own legs
        self.hand_back(self.spent)
        self.server.retire_if_done(call)
        return True


# -- transfers by the phone's own keys (REFER, handed over by the SIP edge) -----------------------

def parse_refer_to(value: str) -> tuple[str, str | None]:
    """(the target's user part, the Call-ID of the dialog to replace or None) of a Refer-To value,
    e.g. `<sip:103@pbx?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2>`."""
    uri = value.strip()
    if "<" in uri:
        uri = uri[uri.index("<") + 1:].split(">", 1)[0]
    user = re.match(r"sips?:([^@;?>]+)@", uri, re.IGNORECASE)
    replaces = None
    if "?" in uri:
        for part in uri.split("?", 1)[1].split("&"):
            name, _, text = part.partition("=")
            if name.strip().lower() == "replaces":
                replaces = unquote(text).split(";", 1)[0].strip() or None
    return (unquote(user.group(1)) if user else ""), replaces


def blind_transfer(call, transferor: Leg, number: str, cseq: str) -> None:
    """REFER without Replaces: the phone is done at once; the other party hears ringback until
    `number` answers (and is hung up if it does not), with the same records as a # transfer."""
    held = next(leg for leg in call.parties() if leg is not transferor)
    transfer = Transfer(call, transferor, held)
    call.transfer = transfer
    transfer.digits = number
    transfer.dial()
    if call.transfer is not transfer:  # nothing to dial: the parties are together again
        send_transfer_outcome(transferor, 404, "Not Found", cseq)
        return
    send_transfer_outcome(transferor, 200, "OK", cseq)
    transfer.party_left(transferor, 200)
    release_after_outcome(call.server, transferor)


def attended_transfer(server: "FeatureServer", refer: tuple, replaced: tuple, cseq: str) -> None:
    """REFER with Replaces: a phone talks to A on one call and to C on another and joins
    them. The older call is the original one: its record ends with
    `transferred_to`; the consultation's record (and recording) goes on with the joined parties and
    is linked to it."""
    (call_1, leg_1), (call_2, leg_2) = refer, replaced
    (original, mine), (consultation, mine_too) = sorted([(call_1, leg_1), (call_2, leg_2)], key=lambda t: t[0].created)
    if not isinstance(consultation, CallPair):
        send_transfer_outcome(leg_1, 603, "Declined", cseq)
        return
    held = next(leg for leg in original.parties() if leg is not mine)
    target = next(leg for leg in consultation.parties() if leg is not mine_too)
    log.info("call %s: %s joins %s with %s (record %s)", original.cdr_id, mine.number, held.number, target.number,
             consultation.cdr_id)
    send_transfer_outcome(leg_1, 200, "OK", cseq)
    server.cdr_transferred(original.cdr_id, target.number)
    server.cdr_link(consultation.cdr_id, original.cdr_id)
    recorder, recording_path = consultation.recorder, consultation.recording_path
    consultation.hand_off()
    CallPair.adopt(server, held, target, cdr_id=consultation.cdr_id, dst=target.number, answered=True,
                   recorder=recorder, recording_path=recording_path, targets=[])
    original.finish("answered", 200)  # hangs up only what is still its own
    for leg in (mine, mine_too):
        if leg is leg_1:  # the REFER's dialog: the NOTIFY went there
            release_after_outcome(server, leg)
        else:
            safe_hangup(leg)
