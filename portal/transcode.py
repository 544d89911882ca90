"""A call's recording downloaded in the format the customer picks: Ogg Opus (what boxes send
since issue 26), WAV (what older boxes sent, and what every editor opens) or MP3, converted from
what is stored by Debian's opus-tools and sox.

The converted file is written whole before its first byte is sent: a WAV's header then carries
its true length (a pipe cannot give one), the answer has a Content-Length, and a conversion that
fails is a clear refusal rather than a cut download. A ten-minute call converts in about a second
(docs/benchmarks.md); at most CONVERSIONS_AT_ONCE run in one portal instance, beyond them the
answer is 503 with Retry-After, so downloads cannot starve the instance's other requests.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Iterator

FORMATS = {"opus": ("audio/ogg", ".opus"), "wav": ("audio/wav", ".wav"), "mp3": ("audio/mpeg", ".mp3")}
CONVERSIONS_AT_ONCE = 4
TIMEOUT_SECONDS = 120
READ_CHUNK = 64 << 10
_PCM = ["-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "1"]  # what opusdec hands sox
_slots = threading.BoundedSemaphore(CONVERSIONS_AT_ONCE)


class Busy(Exception):
    """Every conversion slot of this instance is taken."""


class ConversionFailed(Exception):
    pass


def _commands(source: str, target: str, out: Path) -> list[list[str]]:
    """The processes, piped one into the next, that turn `source` bytes on stdin into `out`."""
    if source == "opus" and target == "wav":
        return [["opusdec", "--quiet", "--rate", "16000", "--force-wav", "-", str(out)]]
    if source == "opus" and target == "mp3":
        return [["opusdec", "--quiet", "--rate", "16000", "-", "-"], ["sox", *_PCM, "-", "-t", "mp3", "-C", "32", str(out)]]
    if source == "wav" and target == "opus":
        return [["opusenc", "--quiet", "--bitrate", "16", "-", str(out)]]
    if source == "wav" and target == "mp3":
        return [["sox", "-t", "wav", "-", "-t", "mp3", "-C", "32", str(out)]]
    raise ValueError(f"no conversion from {source} to {target}")


def converted(stored: BinaryIO, source: str, target: str, work_dir: Path) -> tuple[Iterator[bytes], int]:
    """Converts the stored recording (`source`: "opus" or "wav") to `target`; returns its bytes as
    an iterator and their count. The file lives only as long as the iterator: it is unlinked at once."""
    if not _slots.acquire(blocking=False):
        raise Busy()
    try:
        fd, name = tempfile.mkstemp(dir=work_dir, suffix=FORMATS[target][1])
        os.close(fd)
        out = Path(name)
        try:
            _run(stored, _commands(source, target, out))
            fh = open(out, "rb")
        finally:
            out.unlink(missing_ok=True)  # an open file's bytes stay readable until it is closed
    finally:
        _slots.release()
    size = os.fstat(fh.fileno()).st_size

    def chunks() -> Iterator[bytes]:
        with fh:
            while data := fh.read(READ_CHUNK):
                yield data
    return chunks(), size


def _run(stored: BinaryIO, commands: list[list[str]]) -> None:
    procs: list[subprocess.Popen] = []
    for command in commands:
        procs.append(subprocess.Popen(command, stdin=procs[-1].stdout if procs else subprocess.PIPE,
                                      stdout=subprocess.PIPE if command is not commands[-1] else subprocess.DEVNULL,
                                      stderr=subprocess.PIPE))
        if len(procs) > 1:
            procs[-2].stdout.close()  # the next process owns the pipe now
            procs[-2].stdout = None
    pipe, procs[0].stdin = procs[0].stdin, None  # fed by the thread below, not by communicate()

    def feed() -> None:
        try:
            shutil.copyfileobj(stored, pipe, READ_CHUNK)
        except (OSError, ValueError):
            pass  # the decoder stopped early: its exit status says why
        finally:
            try:
                pipe.close()
            except OSError:
                pass
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        errors = [proc.communicate(timeout=TIMEOUT_SECONDS)[1] for proc in procs]
    except subprocess.TimeoutExpired:
        raise ConversionFailed(f"the conversion took over {TIMEOUT_SECONDS} s") from None
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        feeder.join(timeout=5)
    for proc, said in zip(procs, errors):
        if proc.returncode != 0:
            lines = (said or b"").decode(errors="replace").strip().splitlines()
            raise ConversionFailed(f"{proc.args[0]}: {lines[-1] if lines else f'exit status {proc.returncode}'}")
