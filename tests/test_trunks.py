"""Trunk registration against a provider's registrar played by SIPp (digest checked by verifyauth)."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import EDGEPBX, ROOT, start_pbx, write_office
from sipp import SCENARIOS, free_udp_port

TRUNK_USER, TRUNK_PASSWORD = "8312000000", "trunk-pass-1"


def provider(tmp_path: Path, password: str) -> tuple[subprocess.Popen, int, Path]:
    port = free_udp_port()
    script = tmp_path / "provider.xml"
    script.write_text((SCENARIOS / "provider_registrar.xml").read_text()
                      .replace("@USER@", TRUNK_USER).replace("@PASSWORD@", password))
    trace = tmp_path / "provider.messages"
    proc = subprocess.Popen(["sipp", "-sf", str(script), "-nostdin", "-i", "127.0.0.1", "-p", str(port),
                             "-trace_msg", "-message_file", str(trace)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port, trace


def trunk_state(pbx) -> dict:
    out = subprocess.run(EDGEPBX + ["status", "--config", str(pbx.config), "--json"], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)["trunks"][0]


def wait_state(pbx, wanted: str, timeout: float = 15.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = trunk_state(pbx)
        if state["state"] == wanted:
            return state
        time.sleep(0.3)
    raise AssertionError(f"trunk never became {wanted}: {trunk_state(pbx)}\n{pbx.log_text()[-1500:]}")


@pytest.mark.parametrize("provider_password, expected", [(TRUNK_PASSWORD, "registered"), ("other", "failing")])
def test_trunk_registers_with_digest_through_the_edge(tmp_path, provider_password, expected):
    sipp, port, trace = provider(tmp_path, provider_password)
    extra = (f"trunks:\n  - {{name: main, host: 127.0.0.1, port: {port}, username: \"{TRUNK_USER}\", "
             f"password: {TRUNK_PASSWORD}, register: true, caller_id: \"+78312000000\"}}")
    pbx = start_pbx(write_office(tmp_path, extra=extra))
    try:
        state = wait_state(pbx, expected)
        if expected == "registered":
            assert state["last_code"] == 200
            messages = trace.read_text()
            register = messages[messages.rindex("REGISTER sip:"):]
            # The provider sees the box's SIP port (Kamailio), and the Contact points there too.
            assert re.search(rf"^Via: SIP/2.0/UDP 127\.0\.0\.1:{pbx.sip_port};", register, re.M)
            assert f"Contact: <sip:{TRUNK_USER}@127.0.0.1:{pbx.sip_port}>" in register
        else:
            assert state["last_code"] == 403
            assert "retrying in 5 s" in pbx.log_text()
    finally:
        pbx.stop()
        sipp.kill()


def test_status_lists_trunks_that_do_not_register(tmp_path):
    extra = "trunks:\n  - {name: static, host: 127.0.0.1, port: 5099, register: false}"
    pbx = start_pbx(write_office(tmp_path, extra=extra))
    try:
        assert trunk_state(pbx)["state"] == "not registering"
    finally:
        pbx.stop()
