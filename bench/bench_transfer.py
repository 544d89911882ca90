"""Transfer speed, as the held party hears it. Prints figures, asserts nothing.

Each round: 101 calls 102 (answered); 102 transfers 101 to 103 and 101's phone records what it
hears. Measured from the transferring action (102's REFER with Replaces, or 102 hanging up after a
# consultation): the NOTIFY 200 reaching 102 (REFER only), and the first 20 ms frame in which 101
hears 103's tone (the audio gap the held party lives through). Frame times come from 101's
recording, whose start is known to about one 10-20 ms conference-bridge tick.

No PBX to compare with runs here (Debian 12 has no Asterisk or FreeSWITCH package), so the line
printed for comparison is the same appliance's plain call: INVITE to first audio.

Usage: .venv/bin/python bench/bench_transfer.py [--rounds 10]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench"), str(ROOT)]

import pjsua2 as pj  # noqa: E402

from audio import read_wav  # noqa: E402
from bench_pickup import measure, pct  # noqa: E402
from conftest import TONES, start_pbx, write_office  # noqa: E402
from phones import PhoneLab  # noqa: E402

CONFIRMED, DISCONNECTED = pj.PJSIP_INV_STATE_CONFIRMED, pj.PJSIP_INV_STATE_DISCONNECTED
FRAME_S = 0.02


def first_frame_with(path: Path, freq: float, after_s: float) -> float | None:
    """Seconds into the WAV of the first 20 ms frame after `after_s` where `freq` dominates."""
    rate, data = read_wav(path)
    size = int(rate * FRAME_S)
    t = np.arange(size) / rate
    probe = np.exp(-2j * np.pi * freq * t)
    for start in range(int(after_s * rate), len(data) - size, size):
        frame = data[start:start + size]
        level = abs(np.dot(frame, probe)) * 2 / size
        if level > 0.05:  # the test tone is 0.3 full scale
            return start / rate
    return None


def talking(lab, a, b):
    call = a.dial(b.number)
    lab.wait_for(lambda: call.state == CONFIRMED and b.calls and b.last_call.state == CONFIRMED, 5, "answer")
    lab.poll(0.3)
    return call, b.last_call


def round_refer(lab, held_phone, transferor_phone, target_phone) -> tuple[float, float]:
    held, transferor = talking(lab, held_phone, transferor_phone)
    transferor.setHold(pj.CallOpParam(True))
    consult, _ = talking(lab, transferor_phone, target_phone)
    return complete(lab, held, lambda: transferor.xferReplaces(consult, pj.CallOpParam(True)), transferor)


def round_dtmf(lab, held_phone, transferor_phone, target_phone) -> tuple[float, float]:
    held, transferor = talking(lab, held_phone, transferor_phone)
    transferor.dialDtmf(f"#{target_phone.number}#")
    lab.wait_for(lambda: target_phone.calls and target_phone.last_call.state == CONFIRMED, 5, "consultation")
    lab.poll(0.3)
    return complete(lab, held, transferor.hangup_now, None)


def complete(lab, held, act, notified) -> tuple[float, float]:
    path = held.record_phase("gap")
    recording_started = time.monotonic()
    lab.poll(0.3)
    acted = time.monotonic()
    act()
    notify_ms = float("nan")
    while time.monotonic() - acted < 2:
        lab.poll(0.001)
        if notified is not None and notify_ms != notify_ms and 200 in notified.transfer_codes:
            notify_ms = (time.monotonic() - acted) * 1000
    held.stop_recording()
    lab.poll(0.05)
    offset = acted - recording_started
    heard = first_frame_with(path, TONES["103"], offset)
    lab.hang_up_everything()
    lab.poll(0.3)
    return notify_ms, (heard - offset) * 1000 if heard is not None else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgepbx-transfer-"))
    pbx = start_pbx(write_office(work, no_answer_timeout=30))
    lab = PhoneLab(tmp=work, port=pbx.sip_port)
    lab.start()
    try:
        phones = {n: lab.phone(n, f"pw-{n}-secret", TONES[n]) for n in ("101", "102", "103", "104")}
        refer, dtmf, plain = [], [], []
        for _ in range(args.rounds):
            refer.append(round_refer(lab, phones["101"], phones["102"], phones["103"]))
            dtmf.append(round_dtmf(lab, phones["101"], phones["102"], phones["103"]))
            plain.append(measure(lab, phones["104"], "103"))
            lab.hang_up_everything()
            lab.poll(0.3)
        print(f"{args.rounds} rounds, ms (p50 / p95 / max):")
        for label, rows in (("REFER with Replaces -> NOTIFY 200 at the phone", [r[0] for r in refer]),
                            ("REFER with Replaces -> held party hears target", [r[1] for r in refer]),
                            ("# transfer: hang-up -> held party hears target", [r[1] for r in dtmf]),
                            ("for comparison, plain call: INVITE -> first audio", [r[1] for r in plain])):
            rows = [r for r in rows if r == r]
            if rows:
                print(f"  {label:<52} {pct(rows, 50):7.1f} {pct(rows, 95):7.1f} {max(rows):7.1f}")
            else:
                print(f"  {label:<52} no measurement")
    finally:
        lab.stop()
        pbx.stop()


if __name__ == "__main__":
    main()
