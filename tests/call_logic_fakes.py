"""Fake legs and a fake bridge for the feature server's call logic (appliance/featureserver/calls/).

The calls are written against featureserver.model's protocols, so these stand in for pjsua2:
a test plays the far ends (a phone rings, answers, hangs up, presses a key) and reads what the
call did to each leg (answered with 180/200, hung up with a code, bridged to whom, hearing
music or ringback) and what it wrote in the call records, which are real (SQLite in tmp_path).
The system tests (tests/test_calls.py and the rest) drive the same logic through Kamailio and
pjsua2 with real RTP; these run in milliseconds and reach states a real phone rarely shows.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from appliance.cdr import CdrStore
from appliance.config import load
from appliance.dialplan import DialPlan
from appliance.featureserver.calls.transfer import start_if_asked
from appliance.featureserver.intake import Intake
from appliance.featureserver.limits import OutsideCallLimits
from appliance.featureserver.model import (CONFIRMED, DISCONNECTED, EARLY, DialError, LegState, RecordingError,
                                           Target)
from appliance.featureserver.records import CallRecords
from appliance.featureserver.services import Services
from appliance.featureserver.table import CallTable
from appliance.featureserver.targets import Reach
from appliance.ringing import RingingBoard

EDGE = "127.0.0.1:5060"
_ids = itertools.count(1)


class FakeLeg:
    def __init__(self, owner, role: str, number: str, office: bool, account: object = "incoming"):
        self.owner, self.role, self.number, self.office = owner, role, number, office
        self.account = account
        self.disconnected = False
        self.target: Target | None = None
        self.call_id = f"leg-{next(_ids)}@test"
        self.answers: list[int] = []       # codes this leg was answered with (incoming legs)
        self.hung_up: int | None = None     # the code it was hung up (or rejected) with; 0 = BYE/CANCEL
        self.audio = False
        self.held = False
        self.dtmf_sent: list[str] = []
        self.outcomes: list[int] = []       # transfer outcome NOTIFYs
        self.released = False
        self.fail_dial = False
        self.stream = None                  # a quality.LegSample the test sets: what its stream measured

    def __repr__(self) -> str:
        return f"<FakeLeg {self.role} {self.number}>"

    # the protocol
    def stream_sample(self):
        return self.stream if self.audio and not self.disconnected else None

    def dial(self, target: Target) -> None:
        self.target = target
        if self.fail_dial or getattr(target, "fail", False):
            raise DialError("no RTP port free (fake)")

    def answer(self, code: int) -> str | None:
        self.answers.append(code)
        if code == 200:
            self.audio = True
        return None

    def hangup(self, code: int = 0) -> None:
        if self.hung_up is None and not self.disconnected:
            self.hung_up = code

    def sip_call_id(self) -> str:
        return self.call_id

    def has_audio(self) -> bool:
        return self.audio and not self.disconnected

    def held_by_remote(self) -> bool:
        return self.held

    def send_dtmf(self, digit: str) -> None:
        self.dtmf_sent.append(digit)

    def send_transfer_outcome(self, code: int, reason: str, cseq: str = "") -> None:
        self.outcomes.append(code)

    def release_after_outcome(self) -> None:
        self.released = True
        self.hangup()

    # the far end's doings
    def _report(self, state: str, code: int = 0) -> None:
        if state == DISCONNECTED:
            self.disconnected = True
            self.audio = False
        self.owner.on_leg_state(self, LegState(state, code, self.call_id, f"<sip:{self.number}@far>"))

    def rings(self) -> None:
        self._report(EARLY, 180)

    def answers_call(self) -> None:
        self.audio = True
        self._report(CONFIRMED, 200)
        self.owner.on_media()

    def media_up(self) -> None:
        """The caller's leg: its audio is active (the ACK of our 200 arrived)."""
        self.audio = True
        self.owner.on_media()

    def ends(self, code: int = 200) -> None:
        """The far end hangs up (BYE), refuses (4xx-6xx), or confirms our hangup."""
        self._report(DISCONNECTED, code)

    def presses(self, keys: str) -> None:
        for key in keys:
            self.owner.on_dtmf(self, key)


@dataclass
class Handle:
    kind: str
    leg: FakeLeg | None = None
    path: str = ""


class FakeMedia:
    def __init__(self) -> None:
        self.bridged: set[frozenset] = set()
        self.recordings: list[str] = []
        self.fail_recording = False
        self.prompt_ends: list[Callable[[], None]] = []  # call one: that prompt has been heard

    def bridge(self, one, other, recorder) -> bool:
        if not (one.has_audio() and other.has_audio()):
            return False
        self.bridged.add(frozenset((one, other)))
        return True

    def unbridge(self, one, other) -> None:
        self.bridged.discard(frozenset((one, other)))

    def talking(self, one, other) -> bool:
        return frozenset((one, other)) in self.bridged

    def stop_recording(self, leg, recorder) -> None:
        pass

    def ringback(self, leg):
        return Handle("ringback", leg) if leg.has_audio() else None

    def music_on_hold(self, leg):
        return Handle("music", leg) if leg.has_audio() else None

    def recorder(self, path: str):
        if self.fail_recording:
            raise RecordingError("disk full (fake)")
        self.recordings.append(path)
        return Handle("recorder", path=path)

    def prompt(self, leg, path: str, on_end: Callable[[], None]):
        if not leg.has_audio():
            return None
        self.prompt_ends.append(on_end)
        return Handle("prompt", leg, path)

    def tones(self, leg, tones):
        return Handle("tones", leg) if leg.has_audio() else None


class FakeLegs:
    def __init__(self) -> None:
        self.made: list[FakeLeg] = []
        self.unplaceable = 0  # this many next outgoing legs cannot be dialled (no RTP port free)

    def incoming(self, leg_id: int, owner, role: str, number: str, office: bool = False) -> FakeLeg:
        leg = FakeLeg(owner, role, number, office)
        leg.audio = False
        self.made.append(leg)
        return leg

    def outgoing(self, account: object, owner, role: str, number: str, office: bool = False) -> FakeLeg:
        leg = FakeLeg(owner, role, number, office, account)
        if self.unplaceable:
            self.unplaceable -= 1
            leg.fail_dial = True
        self.made.append(leg)
        return leg

    def to(self, number: str) -> FakeLeg:
        """The newest leg placed towards `number`."""
        return next(leg for leg in reversed(self.made) if leg.number == number and leg.target is not None)


@dataclass
class Office:
    """A feature server without pjsua2: the real intake, calls, records, table and limits over
    fake legs. `clock` moves the timers forward."""
    cfg: object
    services: Services
    intake: Intake
    legs: FakeLegs
    media: FakeMedia
    store: CdrStore
    refused: dict[int, int] = field(default_factory=dict)
    timers: list = field(default_factory=list)
    soon: list = field(default_factory=list)

    def invite(self, caller: str = "", dialled: str = "", *, trunk: str = "", replaces: str = "", to: str = "",
               name: str = "", source: str = EDGE) -> FakeLeg | int:
        """An INVITE relayed by the edge; returns the caller's leg, or the code it was refused with."""
        from appliance.featureserver.edge import EdgeCall
        leg_id = next(_ids)
        before = len(self.legs.made)
        self.intake.invite(leg_id, source, EdgeCall(caller=caller, name=name, dialled=dialled, to=to, trunk=trunk,
                                                    replaces=replaces, call_id=f"invite-{leg_id}@test"))
        if leg_id in self.refused:
            return self.refused[leg_id]
        return self.legs.made[before]

    def tick(self) -> None:
        """One turn of the server's loop: queued work, the calls' timers."""
        while self.soon:
            self.soon.pop(0)()
        for call in self.services.table:
            call.on_timer()

    def time_passes(self) -> None:
        """Every deadline of every call is reached (digit, ringing and no-answer timeouts), then a
        loop turn runs: what the calls do when the time they wait for is up."""
        for call in list(self.services.table):
            for holder in (call, call.transfer):
                for name in ("deadline", "no_answer_deadline"):
                    if getattr(holder, name, None) is not None:
                        setattr(holder, name, 0.0)
        self.tick()

    def records(self) -> list[dict]:
        return list(reversed(self.store.list(include_live=True)))


def make_office(tmp_path: Path, yaml_text: str) -> Office:
    path = tmp_path / "office.yaml"
    path.write_text(yaml_text)
    cfg = load(path)
    store = CdrStore(cfg.data_dir / "cdr.sqlite")
    table = CallTable()
    dialplan = DialPlan(cfg)
    media, legs = FakeMedia(), FakeLegs()
    office: Office
    services = Services(
        cfg=cfg, records=CallRecords(cfg, store), table=table, board=RingingBoard(), dialplan=dialplan,
        reach=Reach(cfg, dialplan, "plain", "secure", {t.name: f"trunk-{t.name}" for t in cfg.trunks}),
        limits=OutsideCallLimits(cfg, store, table), media=media, legs=legs,
        later=lambda seconds, task: office.timers.append((seconds, task)),
        call_soon=lambda task: office.soon.append(task),
        start_transfer=lambda call, leg, digit, parties: start_if_asked(services, call, leg, digit, parties))
    refused: dict[int, int] = {}
    intake = Intake(services, EDGE, lambda leg_id, code: refused.__setitem__(leg_id, code))
    office = Office(cfg, services, intake, legs, media, store, refused)
    return office
