"""What recording as Opus saves and costs (issue 26), beside what the box did before (16 kHz WAV)
and the strongest alternatives measured in the same run: MP3 at 32 kbit/s (sox with LAME, what a
customer would otherwise ask for) and FLAC (lossless).

Printed: bytes a minute of speech (the box's own spoken greeting, repeated) in each format; the
box's CPU to encode a minute (opusenc niced as appliance/opus.py runs it; the child's user+system
time, best of --runs), as a share of one core per concurrent recorded call; the instructions
per minute (callgrind) and, from them, an estimate for a Raspberry Pi 4 (Cortex-A72 at 1.5 GHz,
assumed one instruction a cycle: an estimate, not a measurement); the portal's time to turn a
ten-minute Opus recording into WAV and MP3 for a download; the audio check (two tones' levels
after the codec); and the busy-hour ingest of 1,000 offices (20 recorded calls an hour of 3
minutes each, docs/benchmarks.md) before and after.

    .venv/bin/python bench/bench_opus.py [--runs 5]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from appliance.opus import OPUS_KBPS  # noqa: E402
from audio import band_level_db, write_tones  # noqa: E402
from portal import transcode  # noqa: E402

PI_HZ, PI_IPC = 1.5e9, 1.0
TONES = ((1000.0, -12.0), (440.0, -20.0))


def speech_minute(path: Path) -> Path:
    with wave.open(str(ROOT / "appliance" / "sounds" / "greeting.wav")) as w:
        frames = w.readframes(w.getnframes())
    minute = (frames * (60 * 32000 // len(frames) + 1))[:60 * 32000]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(minute)
    return path


def child_cpu(command: list[str]) -> float:
    before = os.times()
    subprocess.run(command, check=True, capture_output=True)
    after = os.times()
    return (after.children_user - before.children_user) + (after.children_system - before.children_system)


def best(command: list[str], runs: int) -> float:
    return min(child_cpu(command) for _ in range(runs))


def instructions(command: list[str], work: Path) -> int:
    out = work / "callgrind.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
                   check=True, capture_output=True)
    summary = next(line for line in out.read_text().splitlines() if line.startswith("summary:") or line.startswith("totals:"))
    out.unlink()
    return int(re.findall(r"\d+", summary)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wav = speech_minute(work / "speech.wav")
        encoders = {
            f"Opus {OPUS_KBPS} kbit/s": ["nice", "-n", "10", "opusenc", "--quiet", "--bitrate", str(OPUS_KBPS), str(wav), str(work / "s.opus")],
            "MP3 32 kbit/s": ["sox", str(wav), "-C", "32", str(work / "s.mp3")],
            "FLAC": ["sox", str(wav), str(work / "s.flac")],
        }
        print(f"a minute of speech, 16 kHz mono; CPU best of {runs} on this machine ({os.cpu_count()} cores)")
        print(f"{'format':<16} {'bytes/min':>10} {'vs WAV':>7} {'CPU s/min':>10} {'% core/call':>12}")
        print(f"{'WAV (before)':<16} {wav.stat().st_size:>10,} {1.0:>6.1f}x {0.0:>10.3f} {0.0:>11.2f}%")
        sizes = {}
        for name, command in encoders.items():
            cpu = best(command, runs)
            out = Path(command[-1])
            sizes[name] = out.stat().st_size
            # a minute encoded once per minute of call: CPU seconds / 60 s is the share of a core
            print(f"{name:<16} {sizes[name]:>10,} {wav.stat().st_size / sizes[name]:>6.1f}x {cpu:>10.3f} "
                  f"{cpu / 60 * 100:>11.2f}%")
        opus_command = list(encoders)[0]
        count = instructions(encoders[opus_command][3:], work)
        pi_seconds = count / (PI_HZ * PI_IPC)
        print(f"opusenc: {count / 1e6:,.0f} M instructions a minute (callgrind, x86-64); Raspberry Pi 4 ESTIMATE at "
              f"{PI_HZ / 1e9:.1f} GHz, {PI_IPC:.1f} instruction/cycle: {pi_seconds:.2f} s a minute, "
              f"{pi_seconds / 60 * 100:.2f} % of a core per recorded call")

        ten = write_tones(work / "tones.wav", TONES, 600.0)
        subprocess.run(["opusenc", "--quiet", "--bitrate", str(OPUS_KBPS), str(ten), str(work / "ten.opus")], check=True)
        for target in ("wav", "mp3"):
            started = time.monotonic()
            with open(work / "ten.opus", "rb") as fh:
                chunks, size = transcode.converted(fh, "opus", target, work)
                received = sum(len(c) for c in chunks)
            print(f"portal: a 10-minute Opus recording downloaded as {target.upper()}: {received:,} bytes, "
                  f"converted in {time.monotonic() - started:.2f} s")
        subprocess.run(["opusdec", "--quiet", "--rate", "16000", str(work / "ten.opus"), str(work / "back.wav")], check=True)
        for freq, level in TONES:
            heard = band_level_db(work / "back.wav", freq)
            print(f"audio check: {freq:.0f} Hz at {level:.1f} dBFS came back at {heard:.2f} dBFS ({heard - level:+.2f} dB)")

        wav_rate = 1000 * 20 * 3 * wav.stat().st_size / 3600
        opus_rate = 1000 * 20 * 3 * sizes[opus_command] / 3600
        print(f"1,000 offices' busy hour (20 recorded calls of 3 minutes each): WAV {wav_rate / 1e6:.1f} MB/s, "
              f"Opus {opus_rate / 1e6:.2f} MB/s")


if __name__ == "__main__":
    main()
