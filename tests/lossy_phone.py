"""A phone whose line loses packets, in a process of its own: PJSIP's loss simulator
(MediaConfig.txDropPct) is set for a whole pjsua2 library, and the test process's library serves
the clean phones. Registers NUMBER to the box, answers every call, plays its tone, and stays for
SECONDS.  Usage: python tests/lossy_phone.py PORT NUMBER PASSWORD TONE_HZ DROP_PCT SECONDS TMPDIR"""
from __future__ import annotations

import sys
from pathlib import Path

from phones import PhoneLab


def main() -> None:
    port, number, password, tone, drop, seconds, tmp = sys.argv[1:8]
    lab = PhoneLab(tmp=Path(tmp), port=int(port), tx_drop_pct=int(drop), record=False)
    lab.start()
    lab.phone(number, password, float(tone))
    print("registered", flush=True)
    lab.poll(float(seconds))
    lab.stop()


if __name__ == "__main__":
    main()
