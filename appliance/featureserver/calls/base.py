"""What every call kind shares: its caller and callee legs, its record and recording, music on
hold while a phone holds, pickup by another phone, and how it leaves the call table.

Every call runs on the feature server's single library thread, so it is never touched by two
threads. A call ends exactly once (`finish` in each kind); whatever its legs report after that
only tidies up. Every ending records its outcome first and hangs up after: a leg's end may be
reported from inside another leg's hangup, and that report must not rewrite the outcome.
"""
from __future__ import annotations

import logging
import os
import time

from ..model import DialError, Leg, LegState, Target, TransferKind
from ..quality import LegSample, PhoneReport, summary
from ..services import Services

log = logging.getLogger("edgepbx.featureserver")
# Each talking leg's stream figures are read this often. 0 reads none and records no quality: only
# for bench/bench_calls.py, which measures what reading them costs beside not reading them.
QUALITY_SAMPLE_SECONDS = float(os.environ.get("EDGEPBX_QUALITY_SAMPLE_SECONDS", "1"))


def place_next(services: Services, owner: object, cdr_id: str, targets: list[Target], current: Leg | None, role: str,
               number: str, spent: list[Leg]) -> Leg | None:
    """A new leg of `owner` dialled to the first of `targets` that can be dialled (each one tried
    is taken off the list; a trunk's name goes into record `cdr_id`), or None when none can. The
    leg it replaces (`current`, a trunk that failed over) and legs that could not be placed wind
    down in `spent`."""
    if current is not None:
        spent.append(current)
    while targets:
        target = targets.pop(0)
        if target.trunk:
            services.records.trunk(cdr_id, target.trunk)
        elif target.number:  # an office phone: the call rang it (it counts as missed for it if nobody answers)
            services.records.rang(cdr_id, target.number)
        leg = services.legs.outgoing(target.account, owner, role, target.number or number, office=target.trunk is None)
        try:
            leg.dial(target)
            return leg
        except DialError as exc:  # no RTP port free, a bad URI
            log.error("call %s: cannot dial %s: %s", cdr_id, target.uri, exc)
            leg.disconnected = True
            spent.append(leg)
    return None


class Call:
    def __init__(self, services: Services, *, src: str, src_name: str, dst: str, outbound: bool = False):
        self.services = services
        self.cfg = services.cfg
        self.src, self.src_name, self.dst = src, src_name, dst
        self.cdr_id = ""
        self.state = "routing"
        self.outbound = outbound  # a call out over a trunk: rings no office phone, counted by the limits
        self.caller: Leg | None = None
        self.callee: Leg | None = None  # the party talking to the caller, once there is one
        self.spent: list[Leg] = []      # legs this call let go of; kept until they are gone
        self.caller_answered = False
        self.recorder: object | None = None
        self.recording_path: str | None = None
        self.ringback: object | None = None
        self.hold_music: tuple[Leg, object] | None = None  # (the party hearing it, the player)
        self.transfer: TransferKind | None = None
        self.created = time.monotonic()
        self.quality_samples: dict[str, LegSample] = {}  # "caller" / "callee": each leg's latest figures
        self.phone_reports: dict[str, PhoneReport] = {}   # what a side's phone said of the call (RTCP-XR)
        self.next_sample = 0.0

    # -- what the table, pickup and the limits ask ----------------------------------------------

    @property
    def direction_out(self) -> bool:
        """It goes out over a trunk, or holds a leg out over one (an outside caller forwarded, a
        transfer to an outside number): the toll-fraud limits count it."""
        if self.state == "ended":
            return False
        legs = [self.callee, *self.live_legs(), self.transfer.target if self.transfer else None]
        return self.outbound or any(leg is not None and leg.target is not None and leg.target.trunk
                                    and not leg.disconnected for leg in legs)

    def live_legs(self) -> list[Leg]:
        """Legs ringing for this call besides `callee` (an inbound call rings several)."""
        return []

    def parties(self) -> tuple[Leg, Leg] | None:
        """The two legs talking (or one on hold), once answered."""
        if self.state == "answered" and self.caller is not None and self.callee is not None:
            return self.caller, self.callee
        return None

    def owned(self, legs) -> list[Leg]:
        """The legs still this call's (a transfer hands legs on to another call)."""
        return [leg for leg in legs if leg is not None and leg.owner is self]

    def legs_gone(self) -> bool:
        return all(leg.disconnected for leg in self.owned((self.caller, self.callee, *self.live_legs(), *self.spent)))

    def retire_if_done(self) -> None:
        self.services.table.retire_if_done(self)

    def on_timer(self) -> None:
        if self.state == "answered" and QUALITY_SAMPLE_SECONDS and time.monotonic() >= self.next_sample:
            self.next_sample = time.monotonic() + QUALITY_SAMPLE_SECONDS
            self.sample_quality()
        if self.transfer is not None:
            self.transfer.on_timer()

    def sample_quality(self) -> None:
        """Keeps each talking leg's latest stream figures: a leg's stream is gone once it hangs
        up, so the record gets the last second's figures before that."""
        for side, leg in (("caller", self.caller), ("callee", self.callee)):
            if leg is not None and not leg.disconnected:
                sample = leg.stream_sample()
                if sample is not None:
                    self.quality_samples[side] = sample

    def quality_report(self) -> dict | None:
        """`quality` of the call record: per leg what the box measured and its MOS (quality.py)."""
        self.services.table.note_ended(self.cdr_id, {side: leg for side, leg in (("caller", self.caller),
                                                                                 ("callee", self.callee)) if leg})
        if not QUALITY_SAMPLE_SECONDS:
            return None
        self.sample_quality()
        report = {side: summary(sample) for side, sample in self.quality_samples.items()}
        for side, said in self.phone_reports.items():
            report.setdefault(side, {}).update(said.figures())
        return report or None

    def side_of(self, leg: Leg) -> str | None:
        return "caller" if leg is self.caller else "callee" if leg is self.callee else None

    def pick_up(self, leg_id: int, picker: str) -> bool:
        """Another phone dialled the pickup code (or pressed a BLF key) while this call rings an
        office phone: the picker answers the caller, the ringing phones get CANCEL, and the call
        goes on as one call (one record, one recording)."""
        if not self.may_be_picked_up():
            return False
        self.state = "answered"
        self.services.board.stopped(self.cdr_id)
        ringing, self.callee = self.callee, self.services.legs.incoming(leg_id, self, "picker", picker, office=True)
        self.drop_ringing(ringing)
        self.ringback = None
        error = self.callee.answer(200)
        if error:
            log.error("call %s: answering the pickup of %s failed: %s", self.cdr_id, picker, error)
        self.answer_caller(200)
        self.start_recording(picker)
        self.services.records.answered(self.cdr_id, self.recording_path, by=picker)
        self.services.records.picked_up(self.cdr_id, picker)
        log.info("call %s %s -> %s picked up by %s", self.cdr_id, self.src, self.dst, picker)
        self.connect_media()
        return True

    def may_be_picked_up(self) -> bool:
        return False

    def drop_ringing(self, ringing: Leg | None) -> None:
        """(pickup) The legs that rang for this call go: CANCEL, the phones stop ringing."""

    # -- legs -------------------------------------------------------------------------------

    def answer_caller(self, code: int) -> None:
        if self.caller_answered or self.caller is None:
            return  # a transferred caller, answered long ago
        error = self.caller.answer(code)
        if error:
            log.warning("call %s: answering caller with %d failed: %s", self.cdr_id, code, error)
        elif code == 200:
            self.caller_answered = True

    def on_dtmf(self, leg: Leg, digit: str) -> None:
        """The transfer key from an office phone during an answered call starts a transfer; other
        keys go on to the other party."""
        if self.transfer is not None:
            self.transfer.on_dtmf(leg, digit)
            return
        parties = self.parties()
        if parties is None or leg not in parties:
            return
        self.transfer = self.services.start_transfer(self, leg, digit, parties)
        if self.transfer is None:
            other = parties[1] if leg is parties[0] else parties[0]
            other.send_dtmf(digit)

    # -- media ------------------------------------------------------------------------------

    def start_recording(self, answerer: str | None = None) -> None:
        made = self.services.records.new_recording(self.services.media, self.cdr_id, self.src, self.dst, answerer)
        if made is not None:
            self.recorder, self.recording_path = made

    def on_media(self) -> None:
        if self.transfer is not None:
            self.transfer.on_media()
        else:
            self.connect_media()

    def connect_media(self) -> None:
        """Bridges both parties (and the recorder) once both have active audio; idempotent. While
        one phone holds the call, the other party hears music on hold."""
        parties = self.parties()
        if parties is None or self.transfer is not None:
            return
        one, other = parties
        self.services.media.bridge(one, other, self.recorder)
        held = other if one.held_by_remote() else one if other.held_by_remote() else None
        if held is None:
            self.hold_music = None
        elif self.hold_music is None or self.hold_music[0] is not held:
            player = self.services.media.music_on_hold(held)
            self.hold_music = (held, player) if player is not None else None

    def on_leg_state(self, leg: Leg, info: LegState) -> None:
        raise NotImplementedError
