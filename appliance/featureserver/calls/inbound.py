"""An inbound call from a trunk, as the memo has it: the caller hears the greeting and may dial an
extension (RFC 2833 or SIP INFO); without digits the office's scenario runs (ring phones at once
or in turn, or forward to an outside number). Office hours pick the day or the night scenario.
"""
from __future__ import annotations

import logging
import time
import zoneinfo
from datetime import datetime

from ...config import Config, Inbound, Step, WEEKDAYS
from ..model import CONFIRMED, DISCONNECTED, FAILOVER_CODES, Leg, LegState, Target
from ..services import Services
from .base import Call, place_next

log = logging.getLogger("edgepbx.featureserver")


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


class InboundCall(Call):
    """greeting -> waiting (digits) -> ringing -> answered -> ended. `callee` is the phone (or
    outside number) that answered; `ringing` the legs ringing for the caller meanwhile."""

    def __init__(self, services: Services, caller_leg_id: int, *, src: str, did: str, trunk: str, sip_call_id: str):
        super().__init__(services, src=src, src_name=src, dst=did)
        self.trunk = trunk
        self.caller = services.legs.incoming(caller_leg_id, self, "caller", src)
        self.ringing: list[Leg] = []
        self.answered_by: str | None = None
        self.state = "greeting"
        self.digits = ""
        self.deadline: float | None = None  # digit timeout, or the ringing step's timeout
        self.prompt: object | None = None
        self.open = office_open(self.cfg.inbound, self.cfg.timezone)
        self.failover: list[Target] = []  # the other trunks of a forward_external step still to try
        day = self.cfg.inbound.numbers.get(did.lstrip("+"), self.cfg.inbound.day)  # the number's own, if it has
        self.steps = list((day if day is not None else default_day(self.cfg)) if self.open else self.cfg.inbound.night)
        self.cdr_id = services.records.start(direction="inbound", src=src, src_name=src, dst=did,
                                             sip_call_id=sip_call_id)
        services.records.trunk(self.cdr_id, trunk)
        services.table.add(self)

    def live_legs(self) -> list[Leg]:
        return self.ringing

    # -- the caller: answer, greet, listen for digits ---------------------------------------

    def start(self) -> None:
        error = self.caller.answer(200)
        if error:
            log.error("inbound %s: cannot answer: %s", self.cdr_id, error)
            self.finish("failed", 500)
        else:
            self.caller_answered = True

    def play(self, path) -> None:
        if not self.caller.has_audio():
            return
        self.prompt = None
        self.prompt = self.services.media.prompt(self.caller, str(path),
                                                 lambda: self.services.call_soon(self.on_prompt_end))
        if self.prompt is None:  # could not be played (logged): as if it had been heard
            self.on_prompt_end()

    def on_prompt_end(self) -> None:
        self.prompt = None  # dropping the player takes it off the bridge
        if self.state == "waiting":  # after the "no such extension" prompt: listen again
            self.deadline = time.monotonic() + self.cfg.inbound.digit_timeout
        if self.state == "greeting":
            if not self.open and not self.steps:
                self.finish("no_answer", 480)  # closed, nothing configured: the night greeting was it
                return
            self.state = "waiting"
            self.deadline = time.monotonic() + self.cfg.inbound.digit_timeout

    def on_dtmf(self, leg: Leg, digit: str) -> None:
        if self.transfer is not None or self.state == "answered":
            super().on_dtmf(leg, digit)
            return
        if leg is not self.caller or self.state not in ("greeting", "waiting"):
            return
        self.prompt = None
        self.state = "waiting"
        if digit == "#":
            self.check_digits(final=True)
            return
        self.digits += digit
        self.deadline = time.monotonic() + self.cfg.inbound.digit_timeout
        self.check_digits(final=False)

    def check_digits(self, final: bool) -> None:
        """An extension dialled, or a digit of the office's menu ("press 1 for sales"): at once when
        no extension number goes on from it, else after the digit timeout or #."""
        numbers = [e.number for e in self.cfg.extensions]
        menu = self.cfg.inbound.menu
        if self.digits in menu and (final or not any(n.startswith(self.digits) for n in numbers)):
            log.info("inbound %s: caller chose %s in the menu", self.cdr_id, self.digits)
            self.steps = list(menu[self.digits])
            self.next_step()
        elif self.digits in numbers and (final or not any(n != self.digits and n.startswith(self.digits)
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
        super().on_timer()
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
            self.drop_ringing(None)
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
        if self.ringback is None:
            self.ringback = self.services.media.ringback(self.caller)
        reach = self.services.reach
        if step.kind == "external":
            route = self.services.dialplan.route(step.targets[0])
            targets = reach.trunks_for(route.number, route.trunks)
            targets, self.failover = targets[:1], targets[1:]
        else:
            targets = [reach.phone(n, self.src, self.src) for n in step.targets]
            self.services.board.stopped(self.cdr_id)
        self.ring(targets)
        if step.kind != "external":
            self.services.board.ringing(self.cdr_id, step.targets, self.ringing_call_ids())

    def may_be_picked_up(self) -> bool:
        return self.state == "ringing" and self.callee is None

    def pick_up(self, leg_id: int, picker: str) -> bool:
        if not super().pick_up(leg_id, picker):
            return False
        self.deadline = None
        self.answered_by = picker
        return True

    def drop_ringing(self, _ringing: Leg | None) -> None:
        """CANCELs the phones ringing for the caller (a pickup, the step's timeout, the end)."""
        self.failover = []
        # Moved aside first: a leg's end may be reported from inside hangup().
        legs, self.ringing = self.ringing, []
        self.spent.extend(legs)
        for leg in legs:
            leg.hangup()

    def ring(self, targets: list[Target]) -> None:
        for target in targets:
            leg = place_next(self.services, self, self.cdr_id, [target], None, "callee", "", self.spent)
            if leg is not None:
                self.ringing.append(leg)
        if not self.ringing and not self.try_next_trunk():
            self.next_step()

    def ringing_call_ids(self) -> dict[str, str]:
        return {leg.number: leg.sip_call_id() for leg in self.ringing if leg.sip_call_id()}

    def try_next_trunk(self) -> bool:
        if not self.failover:
            return False
        target = self.failover.pop(0)
        log.warning("inbound %s: forwarding over trunk %s instead", self.cdr_id, target.trunk)
        self.ring([target])
        return True

    # -- legs -----------------------------------------------------------------------------

    def on_leg_state(self, leg: Leg, info: LegState) -> None:
        if self.state == "ended" or leg in self.spent or leg.owner is not self:
            self.retire_if_done()
            return
        disconnected = info.state == DISCONNECTED
        if disconnected and self.transfer is not None and self.transfer.party_left(leg, info.code):
            return  # the transfer went on without this leg
        if leg is self.caller:
            if disconnected:
                self.finish("answered" if self.callee else "no_answer", info.code)
            return
        if info.state == CONFIRMED and self.callee is None:
            self.callee = leg
            self.state = "answered"
            self.services.board.stopped(self.cdr_id)
            self.deadline = None
            self.ringing.remove(leg)
            self.drop_ringing(None)
            self.ringback = None
            self.prompt = None
            target = leg.target
            self.answered_by = (target.number or target.uri) if target and target.trunk else info.remote_uri
            self.start_recording(leg.number if leg.office else None)
            self.services.records.answered(self.cdr_id, self.recording_path, by=leg.number if leg.office else None)
            self.connect_media()
        elif disconnected:
            if leg is self.callee:
                self.finish("answered", info.code)
                return
            if leg in self.ringing:
                self.ringing.remove(leg)
                self.spent.append(leg)
            if not self.ringing and self.state == "ringing":
                if not (info.code in FAILOVER_CODES and self.try_next_trunk()):
                    self.next_step()

    def on_media(self) -> None:
        if self.state == "greeting" and self.prompt is None and self.caller.has_audio():
            self.play(self.cfg.inbound.greeting if self.open else self.cfg.inbound.night_greeting)
        super().on_media()

    # -- end ------------------------------------------------------------------------------

    def finish(self, disposition: str, code: int | None) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self.deadline = None
        if self.transfer is not None:
            self.transfer.abort()
        self.prompt = self.ringback = self.recorder = self.hold_music = None
        self.services.board.stopped(self.cdr_id)
        self.services.records.ended(self.cdr_id, disposition, code,
                                    self.quality_report() if disposition == "answered" and self.callee else None)
        log.info("inbound %s from %s to %s ended: %s (%s)", self.cdr_id, self.src, self.dst, disposition, code)
        self.drop_ringing(None)
        if self.callee is not None and self.callee.owner is self:
            self.callee.hangup()
        if self.caller.owner is self:  # not handed on by a transfer
            self.caller.hangup(480 if disposition == "no_answer" else 0)
        self.retire_if_done()

    def abort(self) -> None:
        self.finish("answered" if self.callee else "failed", 503)
