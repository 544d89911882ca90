"""An inbound call from a trunk, as the memo has it: the caller hears the greeting and may dial an
extension (RFC 2833 or SIP INFO); without digits the office's scenario runs (ring phones at once
or in turn, or forward to an outside number). Office hours pick the day or the night scenario.

Runs on the feature server's library thread like CallPair, and shares its bridging and recording.
"""
from __future__ import annotations

import logging
import time
import zoneinfo
from datetime import datetime
from typing import TYPE_CHECKING

import pjsua2 as pj

from ..config import Config, Inbound, Step, WEEKDAYS
from .b2bua import (FAILOVER_CODES, Leg, Target, active_audio, answer, bridge, hold_music_for, relay_dtmf,
                    ringback_to, safe_hangup)

if TYPE_CHECKING:
    from .server import FeatureServer

log = logging.getLogger(__name__)


def office_open(inbound: Inbound, timezone: str, when: datetime | None = None) -> bool:
    """True in office hours (always, without `inbound.hours`); holidays are closed."""
    now = (when or datetime.now()).astimezone(zoneinfo.ZoneInfo(timezone))
    if now.strftime("%Y-%m-%d") in inbound.holidays:
        return False
    if inbound.hours is None:
        return True
    span = inbound.hours.get(WEEKDAYS[now.weekday()])
    return span is not None and span[0] <= now.strftime("%H:%M") < span[1]


def default_day(cfg: Config) -> list[Step]:
    return [Step("ring", [e.number], cfg.no_answer_timeout) for e in cfg.extensions]


class Prompt(pj.AudioMediaPlayer):
    """A prompt played once; tells the call when it has finished."""

    def __init__(self, call: "InboundCall"):
        super().__init__()
        self.call = call

    def onEof2(self) -> None:
        self.call.server.call_soon(self.call.on_prompt_end)


class InboundCall:
    def __init__(self, server: "FeatureServer", caller_leg_id: int, *, src: str, did: str, trunk: str,
                 sip_call_id: str):
        self.server, self.cfg = server, server.cfg
        self.src, self.src_name, self.dst, self.trunk = src, src, did, trunk
        self.caller = Leg(server.account, self, "caller", caller_leg_id, number=src)
        self.callees: list[Leg] = []
        self.spent: list[Leg] = []
        self.winner: Leg | None = None
        self.answered_by: str | None = None
        self.state = "greeting"  # greeting -> waiting (digits) -> ringing -> answered -> ended
        self.digits = ""
        self.deadline: float | None = None  # digit timeout, or the ringing step's timeout
        self.no_answer_deadline = None      # the server's timer loop looks at this (CallPair's); unused here
        self.prompt: Prompt | None = None
        self.ringback: pj.ToneGenerator | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.recording_path: str | None = None
        self.transfer = None  # a Transfer while an office phone transfers this caller
        self.hold_music = None  # for the caller while the office phone holds the call
        self.created = time.monotonic()
        self.open = office_open(self.cfg.inbound, self.cfg.timezone)
        self.failover: list[Target] = []  # the other trunks of a forward_external step still to try
        self.steps = list((self.cfg.inbound.day if self.cfg.inbound.day is not None else default_day(self.cfg))
                          if self.open else self.cfg.inbound.night)
        self.cdr_id = server.cdr_start(direction="inbound", src=src, src_name=src, dst=did,
                                       sip_call_id=sip_call_id)
        server.cdr_trunk(self.cdr_id, trunk)

    # -- the caller: answer, greet, listen for digits ---------------------------------------

    def start(self) -> None:
        error = answer(self.caller, 200)
        if error:
            log.error("inbound %s: cannot answer: %s", self.cdr_id, error)
            self.finish("failed", 500)

    def play(self, path) -> None:
        audio = active_audio(self.caller)
        if audio is None:
            return
        self.stop_prompt()
        self.prompt = Prompt(self)
        try:
            self.prompt.createPlayer(str(path), pj.PJMEDIA_FILE_NO_LOOP)
            self.prompt.startTransmit(audio)
        except pj.Error as exc:
            log.error("inbound %s: cannot play %s: %s", self.cdr_id, path, exc.info())
            self.prompt = None
            self.on_prompt_end()

    def stop_prompt(self) -> None:
        self.prompt = None  # destroying the player takes it off the bridge

    def on_prompt_end(self) -> None:
        self.stop_prompt()
        if self.state == "waiting":  # after the "no such extension" prompt: listen again
            self.deadline = time.monotonic() + self.cfg.inbound.digit_timeout
        if self.state == "greeting":
            if not self.open and not self.steps:
                self.finish("no_answer", 480)  # closed, nothing configured: the night greeting was it
                return
            self.state = "waiting"
            self.deadline = time.monotonic() + self.cfg.inbound.digit_timeout

    def on_dtmf(self, leg: Leg, digit: str) -> None:
        if self.transfer is not None:
            self.transfer.on_dtmf(leg, digit)
            return
        if self.state == "answered" and self.winner is not None:
            from .transfer import Transfer  # imports b2bua, as this module does
            self.transfer = Transfer.start_if_asked(self, leg, digit, self.caller, self.winner)
            if self.transfer is None:
                relay_dtmf(self.winner if leg is self.caller else self.caller, digit)
            return
        if leg is not self.caller or self.state not in ("greeting", "waiting"):
            return
        self.stop_prompt()
        self.state = "waiting"
        if digit == "#":
            self.check_digits(final=True)
            return
        self.digits += digit
        self.deadline = time.monotonic() + self.cfg.inbound.digit_timeout
        self.check_digits(final=False)

    def check_digits(self, final: bool) -> None:
        numbers = [e.number for e in self.cfg.extensions]
        if self.digits in numbers and (final or not any(n != self.digits and n.startswith(self.digits)
                                                          for n in numbers)):
            log.info("inbound %s: caller dialled extension %s", self.cdr_id, self.digits)
            self.steps.insert(0, Step("ring", [self.digits], self.cfg.no_answer_timeout))
            self.next_step()
        elif final or not any(n.startswith(self.digits) for n in numbers):
            log.info("inbound %s: caller dialled %r, no such extension", self.cdr_id, self.digits)
            self.digits = ""
            self.deadline = None  # the timer starts again when the prompt has been heard
            self.play(self.cfg.inbound.invalid_prompt)

    def on_timer(self) -> None:
        if self.transfer is not None:
            self.transfer.on_timer()
        if self.deadline is None or time.monotonic() < self.deadline:
            return
        self.deadline = None
        if self.state == "waiting":
            if self.digits:
                self.check_digits(final=True)
            else:
                self.next_step()
        elif self.state == "ringing":
            log.info("inbound %s: nobody answered in time; next step", self.cdr_id)
            self.drop_callees()
            self.next_step()

    # -- the scenario ---------------------------------------------------------------------

    def next_step(self) -> None:
        self.failover = []
        if not self.steps:
            self.finish("no_answer", 480)
            return
        step = self.steps.pop(0)
        self.state = "ringing"
        self.deadline = time.monotonic() + step.timeout
        self.start_ringback()
        if step.kind == "external":
            route = self.server.dialplan.route(step.targets[0])
            targets = self.server.trunk_targets(route.number, route.trunks)
            targets, self.failover = targets[:1], targets[1:]
        else:
            targets = [self.server.phone_target(n, self.src, self.src) for n in step.targets]
            self.server.board.stopped(self.cdr_id)
        self.ring(targets)
        if step.kind != "external":
            self.server.board.ringing(self.cdr_id, step.targets, self.ringing_call_ids())

    def pick_up(self, leg_id: int, picker: str) -> bool:
        """The pickup code from another phone while office phones ring for this caller."""
        if self.state != "ringing" or self.winner is not None:
            return False
        self.state = "answered"
        self.deadline = None
        self.failover = []
        self.server.board.stopped(self.cdr_id)
        self.winner = Leg(self.server.account, self, "picker", leg_id, number=picker, office=True)
        self.answered_by = picker
        self.drop_callees()
        self.ringback = None
        error = answer(self.winner, 200)
        if error:
            log.error("inbound %s: answering the pickup of %s failed: %s", self.cdr_id, picker, error)
        self.start_recording()
        self.server.cdr_answered(self.cdr_id, self.recording_path)
        self.server.cdr_picked_up(self.cdr_id, picker)
        log.info("inbound %s picked up by %s", self.cdr_id, picker)
        self.connect_media()
        return True

    def ring(self, targets: list[Target]) -> None:
        for target in targets:
            leg = Leg(target.account, self, "callee", number=target.number or "", office=target.trunk is None)
            prm = pj.CallOpParam(True)
            prm.opt.audioCount, prm.opt.videoCount = 1, 0
            prm.txOption.localUri = target.from_uri
            try:
                leg.makeCall(target.uri, prm)
                leg.target = target
                self.callees.append(leg)
            except pj.Error as exc:
                log.warning("inbound %s: cannot ring %s: %s", self.cdr_id, target.uri, exc.info())
        if not self.callees and not self.try_next_trunk():
            self.next_step()

    def ringing_call_ids(self) -> dict[str, str]:
        ids = {}
        for leg in self.callees:
            try:
                ids[leg.number] = leg.getInfo().callIdString
            except pj.Error:
                pass
        return ids

    def try_next_trunk(self) -> bool:
        if not self.failover:
            return False
        target = self.failover.pop(0)
        log.warning("inbound %s: forwarding over trunk %s instead", self.cdr_id, target.trunk)
        self.ring([target])
        return True

    def start_ringback(self) -> None:
        if self.ringback is None:
            self.ringback = ringback_to(self.caller)

    def drop_callees(self) -> None:
        # Moved aside first: pjsua2 may report a leg's end from inside hangup().
        legs, self.callees = self.callees, []
        self.spent.extend(legs)
        for leg in legs:
            safe_hangup(leg)  # CANCEL the ringing phones

    # -- legs -----------------------------------------------------------------------------

    def on_leg_state(self, leg: Leg, info: pj.CallInfo) -> None:
        if self.state == "ended" or leg in self.spent or leg.pair is not self:
            self.server.retire_if_done(self)
            return
        disconnected = info.state == pj.PJSIP_INV_STATE_DISCONNECTED
        if disconnected and self.transfer is not None and self.transfer.party_left(leg, info.lastStatusCode):
            return  # the transfer went on without this leg
        if leg is self.caller:
            if disconnected:
                self.finish("answered" if self.winner else "no_answer", info.lastStatusCode)
            return
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.winner is None:
            self.winner = leg
            self.state = "answered"
            self.server.board.stopped(self.cdr_id)
            self.deadline = None
            self.callees.remove(leg)
            self.drop_callees()
            self.ringback = None
            self.stop_prompt()
            target = getattr(leg, "target", None)
            self.answered_by = target.number or target.uri if target and target.trunk else info.remoteUri
            self.start_recording()
            self.server.cdr_answered(self.cdr_id, self.recording_path)
            self.connect_media()
        elif disconnected:
            if leg is self.winner:
                self.finish("answered", info.lastStatusCode)
                return
            if leg in self.callees:
                self.callees.remove(leg)
                self.spent.append(leg)
            if not self.callees and self.state == "ringing":
                if not (info.lastStatusCode in FAILOVER_CODES and self.try_next_trunk()):
                    self.next_step()

    def on_media(self) -> None:
        if self.state == "greeting" and self.prompt is None and active_audio(self.caller) is not None:
            self.play(self.cfg.inbound.greeting if self.open else self.cfg.inbound.night_greeting)
        if self.transfer is not None:
            self.transfer.on_media()
        else:
            self.connect_media()

    def start_recording(self) -> None:
        from .b2bua import CallPair
        CallPair.start_recording(self)  # same files, same failure handling

    def connect_media(self) -> None:
        if self.winner is not None and self.state == "answered" and self.transfer is None:
            bridge(self.caller, self.winner, self.recorder)
            self.hold_music = hold_music_for(self, self.caller, self.winner)

    # -- end ------------------------------------------------------------------------------

    def finish(self, disposition: str, code: int | None) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self.deadline = None
        if self.transfer is not None:
            self.transfer.abort()
        self.prompt = self.ringback = self.recorder = self.hold_music = None
        self.server.board.stopped(self.cdr_id)
        self.server.cdr_ended(self.cdr_id, disposition, code)
        log.info("inbound %s from %s to %s ended: %s (%s)", self.cdr_id, self.src, self.dst, disposition, code)
        self.drop_callees()
        if self.winner is not None and self.winner.pair is self:
            safe_hangup(self.winner)
        if self.caller.pair is self:  # not handed on by a transfer
            safe_hangup(self.caller, 480 if disposition == "no_answer" else 0)
        self.server.retire_if_done(self)

    def abort(self) -> None:
        self.finish("answered" if self.winner else "failed", 503)

    def parties(self) -> tuple[Leg, Leg] | None:
        if self.state == "answered" and self.winner is not None:
            return self.caller, self.winner
        return None

    def legs_gone(self) -> bool:
        legs = [self.caller, *self.callees, *self.spent] + ([self.winner] if self.winner else [])
        return all(leg.disconnected for leg in legs if leg.pair is self)
