"""The conference bridge for the calls: legs' audio connected both ways and into a recorder,
ringback, music on hold, prompts and tones. A player, tone or recorder plays (or records) for as
long as the call holds the object this returns; dropping it takes it off the bridge, and dropping
a recorder closes its WAV (writing the final header)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import pjsua2 as pj

from ..model import RecordingError
from .leg import PjLeg

log = logging.getLogger("edgepbx.featureserver")

RINGBACK_HZ, RING_ON_MS, RING_OFF_MS = 425, 1000, 4000  # the Russian/European ringback tone


class MusicOnHold(pj.AudioMediaPlayer):
    """The configured WAV (features.music_on_hold), looped into a leg for as long as it lives."""

    def __init__(self, path: Path, audio: pj.AudioMedia):
        super().__init__()
        self.createPlayer(str(path))  # loops by default
        self.startTransmit(audio)


class Prompt(pj.AudioMediaPlayer):
    """A prompt played once; says when it has finished."""

    def __init__(self, on_end: Callable[[], None]):
        super().__init__()
        self.on_end = on_end

    def onEof2(self) -> None:
        self.on_end()


def tone_generator(tones: tuple[tuple[int, int, int], ...], audio: pj.AudioMedia) -> pj.ToneGenerator:
    """(frequency Hz, on ms, off ms) tones, looped into `audio`."""
    vector = pj.ToneDescVector()
    for freq, on_ms, off_ms in tones:
        tone = pj.ToneDesc()
        tone.freq1, tone.freq2, tone.on_msec, tone.off_msec, tone.volume = freq, 0, on_ms, off_ms, 0
        vector.append(tone)
    generator = pj.ToneGenerator()
    generator.createToneGenerator()
    generator.play(vector, True)
    generator.startTransmit(audio)
    return generator


class PjMedia:
    def __init__(self, music_on_hold: Path):
        self.music_path = music_on_hold

    def bridge(self, one: PjLeg, other: PjLeg, recorder: pj.AudioMediaRecorder | None) -> bool:
        """Connects two legs' audio both ways (and into the recorder) once both are active."""
        a, b = one.audio(), other.audio()
        if a is None or b is None:
            return False
        a.startTransmit(b)
        b.startTransmit(a)
        if recorder is not None:
            a.startTransmit(recorder)
            b.startTransmit(recorder)
        return True

    def unbridge(self, one: PjLeg, other: PjLeg) -> None:
        """Stops audio between two legs both ways (one is being put on hold)."""
        a, b = one.audio(), other.audio()
        if a is not None and b is not None:
            for src, dst in ((a, b), (b, a)):
                try:
                    src.stopTransmit(dst)
                except pj.Error:
                    pass

    def stop_recording(self, leg: PjLeg, recorder: pj.AudioMediaRecorder) -> None:
        audio = leg.audio()
        if audio is not None:
            try:
                audio.stopTransmit(recorder)
            except pj.Error:
                pass

    def ringback(self, leg: PjLeg) -> pj.ToneGenerator | None:
        audio = leg.audio()
        return tone_generator(((RINGBACK_HZ, RING_ON_MS, RING_OFF_MS),), audio) if audio is not None else None

    def tones(self, leg: PjLeg, tones: tuple[tuple[int, int], ...]) -> pj.ToneGenerator | None:
        """(frequency, ms) tones 30 ms apart, looped."""
        audio = leg.audio()
        return tone_generator(tuple((f, ms, 30) for f, ms in tones), audio) if audio is not None else None

    def music_on_hold(self, leg: PjLeg) -> MusicOnHold | None:
        audio = leg.audio()
        if audio is None:
            return None
        try:
            return MusicOnHold(self.music_path, audio)
        except pj.Error as exc:
            log.error("cannot play music on hold %s: %s", self.music_path, exc.info())
            return None

    def recorder(self, path: str) -> pj.AudioMediaRecorder:
        recorder = pj.AudioMediaRecorder()
        try:
            recorder.createRecorder(path)
        except pj.Error as exc:
            raise RecordingError(exc.info()) from None
        return recorder

    def prompt(self, leg: PjLeg, path: str, on_end: Callable[[], None]) -> Prompt | None:
        audio = leg.audio()
        if audio is None:
            return None
        prompt = Prompt(on_end)
        try:
            prompt.createPlayer(path, pj.PJMEDIA_FILE_NO_LOOP)
            prompt.startTransmit(audio)
        except pj.Error as exc:
            log.error("cannot play %s: %s", path, exc.info())
            return None
        return prompt
