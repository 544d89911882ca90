"""A call answered only to play a short tone, then hung up: what a phone hears when it dials the
pickup code and nothing is ringing (the memo: "a short 'nothing to pick up' tone").

Answering (rather than refusing with 480) lets every phone play the same tone instead of its own
error display. No CDR: nothing happened. It lives in the call table like any call, so the timer
loop and shutdown treat it alike.
"""
from __future__ import annotations

import logging
import time

from ..model import DISCONNECTED, Leg, LegState
from ..services import Services
from .base import Call

log = logging.getLogger("edgepbx.featureserver")
# The ITU special information tone (three rising tones): "this did not work", in any language.
SIT_TONES = ((950, 330), (1400, 330), (1800, 330))
PLAY_SECONDS = 1.5


class ToneNotice(Call):
    def __init__(self, services: Services, leg_id: int, number: str, why: str):
        super().__init__(services, src=number, src_name=number, dst="")
        self.cdr_id = f"notice:{why}"  # for logs; no record is written
        self.caller = services.legs.incoming(leg_id, self, "caller", number)
        self.state = "answered"
        self.tone: object | None = None
        self.deadline = time.monotonic() + PLAY_SECONDS + 1.0  # hang up even if no media came
        services.table.add(self)
        error = self.caller.answer(200)
        if error:
            log.warning("%s: cannot answer %s: %s", why, number, error)
            self.end()

    def on_media(self) -> None:
        if self.tone is not None or self.state == "ended" or not self.caller.has_audio():
            return
        self.tone = self.services.media.tones(self.caller, SIT_TONES)
        self.deadline = time.monotonic() + PLAY_SECONDS

    def on_timer(self) -> None:
        if self.state != "ended" and time.monotonic() >= self.deadline:
            self.end()

    def on_leg_state(self, leg: Leg, info: LegState) -> None:
        if info.state == DISCONNECTED:
            self.tone = None
            self.state = "ended"
        self.retire_if_done()

    def on_dtmf(self, leg: Leg, digit: str) -> None:
        """Digits mean nothing here."""

    def parties(self) -> None:
        return None

    def end(self) -> None:
        self.state = "ended"
        self.tone = None
        self.caller.hangup()
        self.retire_if_done()

    def abort(self) -> None:
        self.end()
