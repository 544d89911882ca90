"""Transfers. By DTMF, as in the memo: during a call an office phone presses `#`
(features.transfer_key) and dials an extension or number (ended by `#` or a pause of
features.transfer_digit_timeout seconds); the other party hears music on hold meanwhile.
Hanging up hands the held party to the target; `*` (features.transfer_cancel_key), a busy or
unanswered target, or a failed dial bring the held party back. If the held party hangs up, the
consultation call goes on as an ordinary call. By the phone's own keys (REFER, handed over by
the SIP edge): blind, the same machine completed at once; attended (Replaces), two calls joined.

A Transfer lives inside the call that holds both parties ("the call") on the library thread;
the target's leg is a third leg of that call. Records: the consultation gets its own CDR (src =
the transferring phone, linked_id = the call's record); on completion the call's record gets
`transferred_to` and ends, and the consultation record goes on with the held party and the target.
"""
from __future__ import annotations

import logging
import re
import time
from urllib.parse import unquote

from ..model import CONFIRMED, DISCONNECTED, FAILOVER_CODES, CallKind, Leg, LegState, Target, disposition_for_failure
from ..services import Services
from .base import place_next
from .bridged import BridgedCall

log = logging.getLogger("edgepbx.featureserver")


class Transfer:
    def __init__(self, services: Services, call: CallKind, transferor: Leg, held: Leg):
        self.services = services
        self.call = call
        self.features = services.cfg.features
        self.transferor, self.held = transferor, held
        self.state = "dialling"  # dialling -> ringing -> talking; the call's `transfer` is None after
        self.digits = ""
        self.src, self.dst = transferor.number, ""  # the consultation's, for its recording's file name
        self.deadline: float | None = time.monotonic() + self.features.transfer_digit_timeout * 3
        self.target: Leg | None = None
        self.targets: list[Target] = []
        self.cdr_id: str | None = None
        self.recorder: object | None = None
        self.recording_path: str | None = None
        self.ringback: object | None = None
        self.spent: list[Leg] = []
        media = services.media
        media.unbridge(transferor, held)
        if call.recorder is not None:  # the call's recording keeps the held party; the consultation has its own
            media.stop_recording(transferor, call.recorder)
        call.hold_music = None  # the transfer's own music replaces any for a phone's hold
        self.music = media.music_on_hold(held)
        log.info("call %s: %s started a transfer; %s on hold", call.cdr_id, transferor.number, held.number)

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

    def on_media(self) -> None:
        if self.state == "talking" and self.target is not None:
            self.services.media.bridge(self.transferor, self.target, self.recorder)

    # -- the consultation call --------------------------------------------------------------

    def dial(self) -> None:
        services = self.services
        route = services.dialplan.route(self.digits, self.transferor.number)
        external = route.klass not in ("internal", "feature", "denied")
        if route.klass == "internal" and route.number not in (self.transferor.number, self.held.number):
            me = services.cfg.extension(self.transferor.number)
            name = me.name if me else self.transferor.number
            self.targets = [services.reach.phone(route.number, self.transferor.number, name)]
        elif external:
            refusal = services.limits.refusal(self.transferor.number)
            if refusal:
                self.cancel(f"cannot transfer to {self.digits!r}: {refusal}", None)
                return
            self.targets = services.reach.trunks_for(route.number, route.trunks)
        if not self.targets:
            self.cancel(f"cannot transfer to {self.digits!r}: {route.reason or route.klass}", None)
            return
        self.cdr_id = services.records.start(direction="outbound" if external else "internal",
                                             src=self.transferor.number, src_name=self.transferor.number,
                                             dst=self.digits, sip_call_id="",
                                             dst_number=route.number if external else None,
                                             linked_id=self.call.cdr_id)
        self.dst = self.digits
        self.state = "ringing"
        self.deadline = time.monotonic() + services.cfg.no_answer_timeout
        self.ringback = services.media.ringback(self.transferor)
        log.info("call %s: transfer by %s to %s (record %s)", self.call.cdr_id, self.transferor.number,
                 self.digits, self.cdr_id)
        self.dial_next()

    def dial_next(self) -> None:
        self.target = place_next(self.services, self, self.cdr_id, self.targets, self.target, "target", self.digits,
                                 self.spent)
        if self.target is None:
            self.cancel(f"no line free to reach {self.digits}", "failed")

    def legs(self) -> list[Leg]:
        return self.spent + ([self.target] if self.target is not None else [])

    def on_leg_state(self, leg: Leg, info: LegState) -> None:
        if leg is not self.target:  # a failed-over trunk leg winding down
            return
        if info.state == CONFIRMED and self.state == "ringing":
            self.state = "talking"
            self.deadline = None
            self.ringback = None
            made = self.services.records.new_recording(self.services.media, self.cdr_id, self.src, self.dst)
            if made is not None:
                self.recorder, self.recording_path = made
            self.services.records.answered(self.cdr_id, self.recording_path, by=leg.number if leg.office else None)
            self.on_media()
        elif info.state == DISCONNECTED:
            code = info.code
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
        self.call.transfer = None
        if self.transferor.has_audio() and self.held.has_audio():
            self.services.media.bridge(self.transferor, self.held, self.call.recorder)

    def close(self, disposition: str | None, code: int | None) -> None:
        """Ends the consultation: its leg hangs up, its record closes, music and tones stop."""
        self.deadline = None
        self.music = self.ringback = None
        self.recorder = None
        legs = self.legs()
        self.target = None
        self.hand_back(legs)
        for leg in legs:
            leg.hangup()
        if self.cdr_id is not None and disposition is not None:
            answered = self.state == "talking"  # a consultation that took place, whoever ended it
            self.services.records.ended(self.cdr_id, "answered" if answered else disposition, code)

    def hand_back(self, legs: list[Leg]) -> None:
        """Legs winding down become the call's: it is retired only once they are gone."""
        for leg in legs:
            leg.owner = self.call
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
            self.services.records.transferred(call.cdr_id, self.digits)
        else:
            log.info("call %s: held party %s hung up; %s goes on with %s", call.cdr_id, leg.number, other.number,
                     self.digits)
        self.music = self.ringback = None
        BridgedCall.adopt(self.services, other, self.target, cdr_id=self.cdr_id, dst=self.digits,
                          answered=self.state == "talking", recorder=self.recorder,
                          recording_path=self.recording_path, targets=self.targets)
        call.finish("answered", code)  # after the hand-over: the call hangs up only its own legs
        self.hand_back(self.spent)
        self.services.table.retire_if_done(call)
        return True


def start_if_asked(services: Services, call: CallKind, leg: Leg, digit: str, parties: tuple[Leg, Leg]) -> Transfer | None:
    """A Transfer if `digit` is the transfer key from an office phone of the call, else None.
    Outside parties cannot transfer: it would let them dial out at the office's expense. An
    office may keep # for the IVRs it calls (features.transfer_in_outbound_calls: false)."""
    features = services.cfg.features
    if digit != features.transfer_key or not leg.office or leg not in parties:
        return None
    if call.outbound and not features.transfer_in_outbound_calls:
        return None
    held = next(other for other in parties if other is not leg)
    return Transfer(services, call, leg, held)


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


def blind_transfer(services: Services, call: CallKind, transferor: Leg, number: str, cseq: str) -> None:
    """REFER without Replaces: the phone is done at once; the other party hears ringback until
    `number` answers (and is hung up if it does not), with the same records as a # transfer."""
    held = next(leg for leg in call.parties() if leg is not transferor)
    transfer = Transfer(services, call, transferor, held)
    call.transfer = transfer
    transfer.digits = number
    transfer.dial()
    if call.transfer is not transfer:  # nothing to dial: the parties are together again
        transferor.send_transfer_outcome(404, "Not Found", cseq)
        return
    transferor.send_transfer_outcome(200, "OK", cseq)
    transfer.party_left(transferor, 200)
    transferor.release_after_outcome()


def attended_transfer(services: Services, refer: tuple[CallKind, Leg], replaced: tuple[CallKind, Leg],
                      cseq: str) -> None:
    """REFER with Replaces: a phone talks to A on one call and to C on another and joins
    them. The older call is the original one: its record ends with `transferred_to`; the
    consultation's record (and recording) goes on with the joined parties and is linked to it."""
    (call_1, leg_1), (call_2, leg_2) = refer, replaced
    (original, mine), (consultation, mine_too) = sorted([(call_1, leg_1), (call_2, leg_2)], key=lambda t: t[0].created)
    if not isinstance(consultation, BridgedCall):
        leg_1.send_transfer_outcome(603, "Declined", cseq)
        return
    held = next(leg for leg in original.parties() if leg is not mine)
    target = next(leg for leg in consultation.parties() if leg is not mine_too)
    log.info("call %s: %s joins %s with %s (record %s)", original.cdr_id, mine.number, held.number, target.number,
             consultation.cdr_id)
    leg_1.send_transfer_outcome(200, "OK", cseq)
    services.records.transferred(original.cdr_id, target.number)
    services.records.link(consultation.cdr_id, original.cdr_id)
    recorder, recording_path = consultation.recorder, consultation.recording_path
    consultation.hand_off()
    BridgedCall.adopt(services, held, target, cdr_id=consultation.cdr_id, dst=target.number, answered=True,
                      recorder=recorder, recording_path=recording_path, targets=[])
    original.finish("answered", 200)  # hangs up only what is still its own
    for leg in (mine, mine_too):
        if leg is leg_1:  # the REFER's dialog: the NOTIFY went there
            leg.release_after_outcome()
        else:
            leg.hangup()
