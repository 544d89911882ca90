"""Two pjsua2 desk phones (101, 102) for the booted image, run as a process of its own inside the
test's network namespace (the test process's pjsua2 library lives on the host's loopback).

    python tests/vm_phones.py BOX_ADDRESS LOCAL_ADDRESS PASSWORD_101 PASSWORD_102 WORKDIR

Registers both to the box, calls 101 -> 102 and checks by their tones that each hears the other,
hangs up, then calls again and keeps that call up until the process is killed (the power-cut
test). Reports each step as a JSON line on stdout."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pjsua2 as pj

sys.path.insert(0, str(Path(__file__).parent))
from audio import has_tone  # noqa: E402
from conftest import TONES  # noqa: E402
from phones import PhoneLab, talk  # noqa: E402


def report(**fields) -> None:
    print(json.dumps(fields), flush=True)


def main(box: str, local: str, password_101: str, password_102: str, workdir: str) -> None:
    lab = PhoneLab(tmp=Path(workdir), host=local)
    lab.start()
    report(started=True)
    phones = {}
    for number, password in (("101", password_101), ("102", password_102)):
        phone = lab.phone(number, password, TONES[number], register=False)
        phone.register(box, 5060)
        phones[number] = phone
    lab.wait_for(lambda: all(p.reg_code for p in phones.values()), 90, "registrations")
    report(registered={n: p.reg_code for n, p in phones.items()})
    caller, callee = talk(lab, phones["101"], phones["102"], timeout=30)
    lab.poll(8.0)  # under emulation one direction's media may start seconds late (4 s missed it once in 305 tests)
    caller.hangup_now()
    lab.wait_for(lambda: callee.state == pj.PJSIP_INV_STATE_DISCONNECTED, 15, "the callee to hang up")
    report(call=1, heard_by_101=bool(has_tone(caller.record_path, TONES["102"])),
           heard_by_102=bool(has_tone(callee.record_path, TONES["101"])))
    talk(lab, phones["101"], phones["102"], timeout=30)
    report(call=2, up=True)
    lab.poll(3600)


if __name__ == "__main__":
    main(*sys.argv[1:6])
