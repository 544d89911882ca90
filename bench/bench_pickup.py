"""Pickup speed: from the picker's INVITE for `0` to two-way audio. Prints figures, asserts nothing.

For each round a pjsua2 phone (101) calls 102, which rings and never answers; 103 dials 0. Measured
from 103's INVITE: the 200 OK (call confirmed), and the first RTP packet 103 receives from the
caller (audio both ways: the caller's leg was already answered by the pickup). The comparable
figure is a plain call answered at once by the callee (103 calls 104) through the same appliance.

Usage: .venv/bin/python bench/bench_pickup.py [--rounds 20]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import pjsua2 as pj  # noqa: E402

from conftest import TONES, start_pbx, write_office  # noqa: E402
from phones import PhoneLab  # noqa: E402


def rx_packets(call) -> int:
    try:
        return call.getStreamStat(0).rtcp.rxStat.pkt
    except pj.Error:
        return 0


def measure(lab: PhoneLab, picker, dial: str) -> tuple[float, float]:
    started = time.monotonic()
    call = picker.dial(dial)
    confirmed = audio = None
    while time.monotonic() - started < 5 and audio is None:
        lab.poll(0.001)  # also lets the answering phone answer
        now = time.monotonic()
        if confirmed is None and call.state == pj.PJSIP_INV_STATE_CONFIRMED:
            confirmed = now
        if confirmed is not None and call.media_active and rx_packets(call) > 0:
            audio = now
    if audio is None:
        raise RuntimeError("no audio within 5 s")
    return (confirmed - started) * 1000, (audio - started) * 1000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgepbx-pickup-"))
    pbx = start_pbx(write_office(work, no_answer_timeout=30))
    lab = PhoneLab(tmp=work, port=pbx.sip_port, record=False)
    lab.start()
    try:
        caller = lab.phone("101", "pw-101-secret", TONES["101"])
        ringing = lab.phone("102", "pw-102-secret", TONES["102"])
        ringing.answer = "never"
        picker = lab.phone("103", "pw-103-secret", TONES["103"])
        lab.phone("104", "pw-104-secret", TONES["104"])  # answers the plain calls at once
        pickup, plain = [], []
        for _ in range(args.rounds):
            call = caller.dial("102")
            lab.wait_for(lambda: call.saw(pj.PJSIP_INV_STATE_EARLY), 10, "102 to ring")
            lab.poll(0.2)
            pickup.append(measure(lab, picker, "0"))
            lab.hang_up_everything()
            ringing.answer = "never"
            lab.poll(0.3)
            plain.append(measure(lab, picker, "104"))
            lab.hang_up_everything()
            ringing.answer = "never"
            lab.poll(0.3)
        print(f"{args.rounds} rounds, ms from the INVITE (p50 / p95 / max):")
        for label, rows in (("pickup with 0: 200 OK", [r[0] for r in pickup]),
                            ("pickup with 0: first audio", [r[1] for r in pickup]),
                            ("plain call answered at once: 200 OK", [r[0] for r in plain]),
                            ("plain call answered at once: first audio", [r[1] for r in plain])):
            print(f"  {label:<44} {pct(rows, 50):7.1f} {pct(rows, 95):7.1f} {max(rows):7.1f}")
    finally:
        lab.stop()
        pbx.stop()


if __name__ == "__main__":
    main()
