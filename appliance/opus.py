"""Finished calls' recordings become Ogg Opus: speech at 16 kbit/s is about a seventeenth of the
WAV's bytes (docs/benchmarks.md), so the box keeps more days on its disk and the provider
receives and stores a sixteenth.

The feature server still writes WAV during the call: a crash or power loss leaves a file whose
header wavfix repairs, where a half-written Ogg stream would need more. Once the call ended and
the WAV is closed, the cloud agent encodes it (Debian's opus-tools: `opusenc`, niced, in a
process of its own that the agent's loop looks in on each round), renames the finished file into
place, points the call record at it, then deletes the WAV. A crash at any point leaves either the
WAV the record names or the Opus file it names; a WAV opusenc cannot read (cut mid-header) is kept
and sent as it is, never lost.
"""
from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

from .cdr import CdrStore
from .recordings import finished_writing

OPUS_KBPS = 16  # speech stays clear; a minute of it is about 111 KB (a minute of box WAV: 1.9 MB)
ENCODE_TIMEOUT_SECONDS = 600  # an hour-long call encodes in about 30 s here; a stuck encoder is killed

log = logging.getLogger(__name__)


class EncodeFailed(Exception):
    pass


class Encoding:
    """One WAV being encoded by an opusenc of its own: the agent's loop goes on (heartbeats,
    uploads) while an hour-long call encodes, which takes minutes on a Pi."""

    def __init__(self, cdr_id: str, wav: Path):
        self.cdr_id, self.wav = cdr_id, wav
        self.target = wav.with_suffix(".opus")
        self.part = wav.with_suffix(".opus.part")
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(["nice", "-n", "10", "opusenc", "--quiet", "--bitrate", str(OPUS_KBPS),
                                          str(wav), str(self.part)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            raise EncodeFailed(str(exc)) from None

    def done(self) -> bool:
        if self.proc.poll() is None and time.monotonic() - self.started > ENCODE_TIMEOUT_SECONDS:
            self.proc.kill()
            self.proc.wait()
        return self.proc.poll() is not None

    def cancel(self) -> None:
        """Stops opusenc and removes its unfinished file; the WAV and its record stay as they were."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()
        self.part.unlink(missing_ok=True)

    def finish(self) -> Path:
        """The Opus file, durable and renamed into place; the WAV is left alone."""
        said = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
        self.proc.stderr.close()
        try:
            if self.proc.returncode != 0:
                raise EncodeFailed(said[-1] if said else f"opusenc ended with {self.proc.returncode}")
            with open(self.part, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(self.part, self.target)
            directory = os.open(self.target.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise EncodeFailed(str(exc)) from None
        finally:
            self.part.unlink(missing_ok=True)
        return self.target


def encode(wav: Path) -> Path:
    """Encodes `wav` beside it and waits (bench and tests; the agent does not wait)."""
    job = Encoding("", wav)
    job.proc.wait()
    return job.finish()


class RecordingEncoder:
    """Encodes the recordings waiting in the outbox, one at a time, oldest first."""

    def __init__(self, store: CdrStore):
        self.store = store
        self.db = store.db
        self.refused: set[str] = set()  # WAVs opusenc could not read: they go as they are
        self.job: Encoding | None = None
        self._drop_leftover_wavs()

    def waits_for(self, recording: Path) -> bool:
        """True while this recording is still to be encoded: its upload waits."""
        return recording.suffix == ".wav" and str(recording) not in self.refused

    def stop(self) -> None:
        """The agent stops, or recordings are to stay WAV: the encoding under way is abandoned."""
        if self.job is not None:
            self.job.cancel()
            self.job = None

    def step(self) -> bool:
        """Finishes the encoding under way, or starts the next; True if one finished or started."""
        if self.job is not None:
            if not self.job.done():
                return False
            job, self.job = self.job, None
            try:
                opus = job.finish()
            except EncodeFailed as exc:
                return self._refuse(job.cdr_id, job.wav, exc)
            if self.store.recording_encoded(job.cdr_id, str(job.wav), str(opus)):
                job.wav.unlink(missing_ok=True)
            else:
                opus.unlink(missing_ok=True)  # the record moved on meanwhile (pruned): nothing names it
            return True
        rows = self.db.execute(
            "SELECT c.id, c.recording, c.ended_at FROM outbox o JOIN cdr c ON c.id = o.ref "
            "WHERE o.kind = 'recording' AND c.recording LIKE '%.wav' ORDER BY o.seq LIMIT 50").fetchall()
        for cdr_id, recording, ended_at in rows:
            wav = Path(recording)
            if recording in self.refused or not wav.exists():
                continue
            try:
                if not finished_writing(wav, ended_at):
                    continue
                self.job = Encoding(cdr_id, wav)
            except (EncodeFailed, OSError, ValueError) as exc:
                return self._refuse(cdr_id, wav, exc)
            return True
        return False

    def _refuse(self, cdr_id: str, wav: Path, exc: Exception) -> bool:
        log.error("recording %s of call %s could not be encoded (%s); it is kept and sent as WAV", wav, cdr_id, exc)
        self.refused.add(str(wav))
        return True

    def _drop_leftover_wavs(self) -> None:
        """A crash between the record's update and the WAV's deletion leaves the WAV beside its
        Opus file: it goes at the next start."""
        for (recording,) in self.db.execute("SELECT recording FROM cdr WHERE recording LIKE '%.opus' "
                                            "AND recording_pruned_at IS NULL AND recording_synced_at IS NULL"):
            Path(recording).with_suffix(".wav").unlink(missing_ok=True)
