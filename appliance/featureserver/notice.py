"""A call answered only to play a short tone, then hung up: what a phone hears when it dials the
pickup code and nothing is ringing (the memo: "a short 'nothing to pick up' tone").

Answering (rather than refusing with 480) lets every phone play the same tone instead of its own
error display. No CDR: nothing happened. It lives in the server's call table like any call, so the
timer loop and shutdown treat it alike.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import pjsua2 as pj

from .b2bua import Leg, active_audio, answer, safe_hangup

if TYPE_CHECKING:
    from .server import FeatureServer

log = logging.getLogger(__name__)
# The ITU special information tone (three rising tones): "this did not work", in any language.
SIT_TONES = ((950, 330), (1400, 330), (1800, 330))
PLAY_SECONDS = 1.5


class ToneNotice:
    def __init__(self, server: "FeatureServer", leg_id: int, number: str, why: str):
        self.server = server
        self.cdr_id = f"notice:{why}"  # for logs; no record is written
        self.caller = Leg(server.account, self, "caller", leg_id, number=number)
        self.state = "answered"
        self.transfer = None
        self.tone: pj.ToneGenerator | None = None
        self.deadline = time.monotonic() + PLAY_SECONDS + 1.0  # hang up even if no media came
        error = answer(self.caller, 200)
        if error:
            log.warning("%s: cannot answer %s: %s", why, number, error)
            self.end()

    def on_media(self) -> None:
        audio = active_audio(self.caller)
        if audio is None or self.tone is not None or self.state == "ended":
            return
        tones = pj.ToneDescVector()
        for freq, ms in SIT_TONES:
            tone = pj.ToneDesc()
            tone.freq1, tone.freq2, tone.on_msec, tone.off_msec, tone.volume = freq, 0, ms, 30, 0
            tones.append(tone)
        self.tone = pj.ToneGenerator()
        self.tone.createToneGenerator()
        self.tone.play(tones, True)
        self.tone.startTransmit(audio)
        self.deadline = time.monotonic() + PLAY_SECONDS

    def on_timer(self) -> None:
        if self.state != "ended" and time.monotonic() >= self.deadline:
            self.end()

    def on_leg_state(self, leg: Leg, info: pj.CallInfo) -> None:
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.tone = None
            self.state = "ended"
        self.server.retire_if_done(self)

    def on_dtmf(self, leg: Leg, digit: str) -> None:
        """Digits mean nothing here."""

    def end(self) -> None:
        self.state = "ended"
        self.tone = None
        safe_hangup(self.caller)
        self.server.retire_if_done(self)

    def abort(self) -> None:
        self.end()

    def parties(self) -> None:
        return None

    def legs_gone(self) -> bool:
        return self.caller.disconnected
