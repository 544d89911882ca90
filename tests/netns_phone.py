"""pjsua2 phones in a network namespace of the test's own, driven by the test over stdin/stdout.

    ip netns exec NS python tests/netns_phone.py LOCAL_ADDRESS WORKDIR

One pjsua2 library per process (pjsua2 allows one) bound to LOCAL_ADDRESS: the test's own
library lives on the host's loopback, these phones in an office LAN, a home behind its own NAT or
at the SIP provider. Each request is a JSON line; each answer is one JSON line:

    {"op": "register", "number": "101", "password": "...", "registrar": "192.168.1.10", "port": 5060}
    {"op": "listen", "number": "provider"}       an account without registration: takes any call
    {"op": "dial", "number": "101", "uri": "sip:102@192.168.1.10:5060"}
    {"op": "talking", "number": "101", "timeout": 10}  waits for its last call to be up
    {"op": "hears", "number": "101", "hz": 1300, "seconds": 2}  records its call: is the tone there?
    {"op": "hangup"}                              every call of every phone
    {"op": "poll", "seconds": 1}                  lets the library run (keep-alives, refreshes)
    {"op": "codec", "only": "PCMU/"}              this process's phones offer and accept only that codec ("": all again)
"""
from __future__ import annotations

import json
import select
import sys
import time
from pathlib import Path

import pjsua2 as pj

sys.path.insert(0, str(Path(__file__).parent))
from audio import has_tone  # noqa: E402
from phones import Phone, PhoneLab, TestCall  # noqa: E402

TONE_OF = {"101": 500.0, "102": 1300.0, "103": 2100.0, "104": 2900.0, "105": 800.0, "provider": 1700.0,
           "remote": 2300.0}


class Agent:
    def __init__(self, local: str, workdir: str):
        self.lab = PhoneLab(tmp=Path(workdir), host=local)
        self.lab.start()
        self.phones: dict[str, Phone] = {}
        self.ended: list[TestCall] = []  # finished calls, kept (op_hangup)
        self.priorities: dict[str, int] | None = None  # the library's own codec priorities (op_codec)

    def phone(self, number: str, password: str = "") -> Phone:
        phone = self.lab.phone(number, password, TONE_OF.get(number, 1000.0), register=False)
        self.phones[number] = phone
        return phone

    def op_register(self, number: str, password: str, registrar: str, port: int, timeout: float = 20) -> dict:
        phone = self.phone(number, password)
        phone.register(registrar, port)
        self.lab.wait_for(lambda: phone.reg_code != 0, timeout, f"registration of {number}")
        return {"code": phone.reg_code}

    def op_listen(self, number: str, port: int = 5060) -> dict:
        """A SIP peer on its own well-known port (the provider's switch): takes any call, and its
        calls leave from that port (so the office's edge knows the trunk by its address)."""
        phone = self.phone(number)
        tc = pj.TransportConfig()
        tc.port = port
        tc.boundAddress = self.lab.host
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{number}@{self.lab.host}:{port}"
        cfg.sipConfig.transportId = self.lab.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
        cfg.natConfig.sdpNatRewriteUse = 0
        phone.create(cfg, True)  # the default account: it takes every incoming call
        return {"listening": port}

    def op_dial(self, number: str, uri: str) -> dict:
        phone = self.phones[number]
        call = TestCall(phone)
        phone.calls.append(call)
        prm = pj.CallOpParam(True)
        prm.opt.videoCount = 0
        call.makeCall(uri, prm)
        return {"dialled": uri}

    def op_talking(self, number: str, timeout: float = 10) -> dict:
        phone = self.phones[number]
        try:
            self.lab.wait_for(lambda: phone.calls and phone.last_call.state == pj.PJSIP_INV_STATE_CONFIRMED
                              and phone.last_call.media_active, timeout, f"{number} to talk")
        except AssertionError:
            state = phone.last_call.state if phone.calls else None
            return {"talking": False, "state": state, "code": phone.last_call.last_code if phone.calls else 0}
        return {"talking": True}

    def op_hears(self, number: str, hz: float, seconds: float = 2.0) -> dict:
        call = self.phones[number].last_call
        path = call.record_phase(f"hears-{hz:.0f}-{time.monotonic_ns()}")
        self.lab.poll(seconds)
        call.stop_recording()
        self.lab.poll(0.3)
        return {"hears": bool(has_tone(path, hz)), "up": call.state == pj.PJSIP_INV_STATE_CONFIRMED}

    def op_hangup(self) -> dict:
        """Every call ends; their objects stay referenced for the life of the process: a pjsua2
        call freed while its media was still being torn down crashed this process in the media
        thread once (a segfault under load, 2026-12-03)."""
        self.lab.ep.hangupAllCalls()
        calls = [call for phone in self.phones.values() for call in phone.calls]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(c.state != pj.PJSIP_INV_STATE_DISCONNECTED for c in calls):
            self.lab.poll(0.1)
        self.lab.poll(0.2)
        self.ended.extend(calls)
        for phone in self.phones.values():
            phone.calls.clear()
        return {"hung_up": True}

    def op_codec(self, only: str) -> dict:
        """`only` "" gives back the library's own priorities."""
        if self.priorities is None:
            self.priorities = {c.codecId: c.priority for c in self.lab.ep.codecEnum2()}
        for codec_id, priority in self.priorities.items():
            self.lab.ep.codecSetPriority(codec_id, (255 if codec_id.startswith(only) else 0) if only else priority)
        return {"codec": only}

    def op_poll(self, seconds: float) -> dict:
        self.lab.poll(seconds)
        return {"polled": seconds}

    def serve(self) -> None:
        print(json.dumps({"ready": True}), flush=True)
        while True:
            ready, _, _ = select.select([sys.stdin], [], [], 0.02)
            if not ready:
                self.lab.poll(0.02)  # between requests the phones keep running
                continue
            line = sys.stdin.readline()
            if not line:
                return
            request = json.loads(line)
            op = request.pop("op")
            try:
                answer = getattr(self, f"op_{op}")(**request)
            except Exception as exc:  # the test reads the error instead of a dead pipe
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    Agent(sys.argv[1], sys.argv[2]).serve()
