"""Trunk registration against a provider's registrar played by SIPp (digest checked by verifyauth)."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import EDGEPBX, ROOT, start_pbx, write_office
from phones import talk
from sipp import SCENARIOS, free_udp_port, provider_calls

TRUNK_USER, TRUNK_PASSWORD = "8312000000", "trunk-pass-1"


def provider(tmp_path: Path, password: str, expires: int = 60) -> tuple[subprocess.Popen, int, Path]:
    port = free_udp_port()
    script = tmp_path / "provider.xml"
    script.write_text((SCENARIOS / "provider_registrar.xml").read_text()
                      .replace("@USER@", TRUNK_USER).replace("@PASSWORD@", password).replace("@EXPIRES@", str(expires)))
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


def test_trunk_re_registers_before_its_registration_expires(tmp_path):
    sipp, port, trace = provider(tmp_path, TRUNK_PASSWORD, expires=8)
    extra = (f"trunks:\n  - {{name: main, host: 127.0.0.1, port: {port}, username: \"{TRUNK_USER}\", "
             f"password: {TRUNK_PASSWORD}, register: true}}")
    pbx = start_pbx(write_office(tmp_path, extra=extra))
    try:
        wait_state(pbx, "registered")
        registered_at = time.monotonic()
        time.sleep(6.0)  # pjsua refreshes 5 s before expiry: about 3 s after the first 200
        messages = trace.read_text()
        # Challenge + authenticated REGISTER, then the refresh (SIPp keeps no state for the old
        # Call-ID and stays silent to it, which is fine here: the refresh itself is the point).
        assert messages.count("REGISTER sip:") >= 3, messages[-1500:]
        stamps = re.findall(r"^-+ \S+ (\d\d):(\d\d):(\d\d\.\d+)\nUDP message received", messages, re.M)
        assert len(stamps) >= 3 and time.monotonic() - registered_at < 7
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


def test_outbound_call_fails_over_to_the_next_trunk_which_authenticates_it(tmp_path, lab):
    import pjsua2 as pj

    from conftest import TONES

    down, down_port, down_trace = provider_calls(tmp_path, "provider_503.xml", "down")
    backup, backup_port, backup_trace = provider_calls(tmp_path, "provider_call.xml", "backup")
    extra = f"""site: {{name: "NN", area_code: "831"}}
trunks:
  - {{name: main, host: 127.0.0.1, port: {down_port}, register: false, caller_id: "+78312000000"}}
  - {{name: backup, host: 127.0.0.1, port: {backup_port}, register: false, username: nn-office, password: trunk-pass-2,
     caller_id: "+78312000001", number_format: national}}"""
    pbx = start_pbx(write_office(tmp_path, extra=extra))
    lab.port = pbx.sip_port
    try:
        phone = lab.phone("101", "pw-101-secret", TONES["101"])
        call = phone.dial("89101234567")
        lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED, 15, "the call out to be answered")
        lab.poll(1.0)
        call.hangup_now()
        lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "hang-up")

        assert "INVITE sip:+79101234567@127.0.0.1" in down_trace.read_text()       # main: E.164, got 503
        sent = backup_trace.read_text()
        assert "INVITE sip:89101234567@127.0.0.1" in sent                          # backup: national format
        assert re.search(r"^From: <sip:\+78312000001@", sent, re.M)                 # the trunk's caller ID
        assert "\nAuthorization: Digest" in sent                                     # answered the challenge
        record = pbx.wait_cdr(lambda r: r["dst"] == "89101234567")
        assert record["direction"] == "outbound" and record["dst_number"] == "+79101234567"
        assert record["trunk"] == "backup" and record["disposition"] == "answered"
    finally:
        lab.release_phones()
        pbx.stop()
        down.kill()
        backup.kill()


def test_a_call_the_extension_may_not_make_is_refused(tmp_path):
    from sipp import run_sipp

    extensions = ('  - {number: "101", name: "Reception", password: "pw-101-secret", permissions: city}\n'
                  '  - {number: "102", name: "Sales", password: "pw-102-secret"}')
    extra = 'site: {name: "NN", area_code: "831"}\ntrunks:\n  - {name: main, host: 127.0.0.1, port: 5099, register: false}'
    pbx = start_pbx(write_office(tmp_path, extra=extra, extensions=extensions))
    try:
        result = run_sipp("call_expect_failure.xml", tmp_path, pbx.sip_port, service="89101234567", user="101",
                          password="pw-101-secret", expected="403")
        assert result.returncode == 0, result.output
        record = pbx.wait_cdr(lambda r: r["dst"] == "89101234567")
        assert record["disposition"] == "failed" and record["trunk"] is None
    finally:
        pbx.stop()


def test_a_transfer_to_an_outside_number_goes_over_the_trunk(tmp_path, lab):
    """102 transfers 101 with # to a mobile number: the dial plan and the trunk carry the
    consultation; hanging up hands 101 to the outside party. The provider is SIPp (no audio)."""
    import pjsua2 as pj

    from conftest import TONES

    provider, port, trace = provider_calls(tmp_path, "provider_call.xml", "provider")
    extra = f"""site: {{name: "NN", area_code: "831"}}
trunks:
  - {{name: main, host: 127.0.0.1, port: {port}, register: false, username: nn-office, password: trunk-pass-2,
     caller_id: "+78312000000"}}"""
    pbx = start_pbx(write_office(tmp_path, extra=extra))
    lab.port = pbx.sip_port
    try:
        held_phone = lab.phone("101", "pw-101-secret", TONES["101"])
        transferring = lab.phone("102", "pw-102-secret", TONES["102"])
        held, _ = talk(lab, held_phone, transferring)
        lab.poll(0.5)
        transferring.last_call.dialDtmf("#89101234567#")
        lab.wait_for(lambda: "SIP/2.0 200 OK" in trace.read_text(), 10, "the provider to answer the consultation")
        lab.poll(0.5)
        transferring.last_call.hangup_now()
        lab.poll(1.0)
        assert held.state == pj.PJSIP_INV_STATE_CONFIRMED, "101 stays, now with the outside party"
        held.hangup_now()
        lab.wait_for(lambda: provider.poll() is not None, 10, "the provider to get the BYE")
        sent = trace.read_text()
        assert "INVITE sip:+79101234567@127.0.0.1" in sent and re.search(r"^From: <sip:\+78312000000@", sent, re.M)
        original = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102")
        assert original["transferred_to"] == "89101234567"
        linked = pbx.wait_cdr(lambda r: r["linked_id"] == original["id"])
        assert (linked["direction"], linked["trunk"], linked["dst_number"], linked["disposition"]) == \
            ("outbound", "main", "+79101234567", "answered")
    finally:
        lab.release_phones()
        pbx.stop()
        provider.kill()


def test_hash_reaches_an_outside_ivr_when_the_office_keeps_it_for_them(tmp_path, lab):
    """features.transfer_in_outbound_calls: false — in a call 101 made out, # goes to the far end
    (here as SIP INFO: the provider offers no telephone-event) instead of starting a transfer."""
    import pjsua2 as pj

    from conftest import TONES

    ivr, port, trace = provider_calls(tmp_path, "provider_ivr.xml", "ivr", {"KEY": "#"})
    extra = f"""site: {{name: "NN", area_code: "831"}}
features: {{transfer_in_outbound_calls: false}}
trunks:
  - {{name: main, host: 127.0.0.1, port: {port}, register: false}}"""
    pbx = start_pbx(write_office(tmp_path, extra=extra))
    lab.port = pbx.sip_port
    try:
        phone = lab.phone("101", "pw-101-secret", TONES["101"])
        call = phone.dial("88002000600")
        lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED, 10, "the IVR to answer")
        lab.poll(0.5)
        call.dialDtmf("#")
        lab.wait_for(lambda: "Signal=#" in trace.read_text(), 5, "the IVR to receive #")
        call.hangup_now()
        lab.wait_for(lambda: ivr.poll() is not None, 10, "the IVR scenario to end")
        assert ivr.returncode == 0, trace.read_text()[-2000:]
        assert "started a transfer" not in pbx.log_text()
    finally:
        lab.release_phones()
        pbx.stop()
        ivr.kill()


def test_a_burst_of_international_calls_is_stopped_at_the_limits_and_the_trunk_sees_no_more(tmp_path, lab):
    """Toll fraud as it happens: a guessed extension dials abroad again and again. With at most 2
    calls out at once and 4 an hour for an extension, the third simultaneous call and the fifth
    in the hour are refused with 403 before any trunk, and the box raises its toll alarm."""
    import pjsua2 as pj

    from conftest import TONES

    port = free_udp_port()
    trace = tmp_path / "provider.messages"
    provider = subprocess.Popen(["sipp", "-sf", str(SCENARIOS / "uas_answer.xml"), "-nostdin", "-i", "127.0.0.1",
                                 "-p", str(port), "-trace_msg", "-message_file", str(trace)], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    extra = f"""security: {{outside_calls: {{per_extension: {{concurrent: 2, calls_per_hour: 4}}}}}}
trunks:
  - {{name: main, host: 127.0.0.1, port: {port}, register: false}}"""
    # international calls are off by default: this extension's were switched on, as a thief wants
    extensions = '  - {number: "101", name: "Reception", password: "pw-101-secret", permissions: international}'
    pbx = start_pbx(write_office(tmp_path, extra=extra, extensions=extensions))
    lab.port = pbx.sip_port
    confirmed, gone = pj.PJSIP_INV_STATE_CONFIRMED, pj.PJSIP_INV_STATE_DISCONNECTED
    try:
        phone = lab.phone("101", "pw-101-secret", TONES["101"])
        burst = [phone.dial(f"81044207946000{n}") for n in range(3)]  # three calls to London at once
        lab.wait_for(lambda: sum(c.state == confirmed for c in burst) == 2 and any(c.state == gone for c in burst),
                     15, "two calls up and the third refused")
        refused = next(c for c in burst if c.state == gone)
        assert refused.last_code == 403
        for call in burst:
            call.hangup_now()
        lab.poll(1.0)
        later = []
        for n in range(3):  # one after another: the 3rd and 4th of the hour go, the 5th does not
            later.append(phone.dial(f"81044207946100{n}"))
            lab.wait_for(lambda: later[-1].state in (confirmed, gone), 15, "the call to be answered or refused")
            later[-1].hangup_now()
            lab.poll(0.5)
        assert [c.saw(confirmed) for c in later] == [True, True, False] and later[2].last_code == 403
        assert trace.read_text().count("INVITE sip:") == 4  # the trunk saw the four allowed calls only
        status = json.loads(subprocess.run(EDGEPBX + ["status", "--config", str(pbx.config), "--json"],
                                           capture_output=True, text=True, check=True, cwd=ROOT).stdout)
        assert "extension 101: 4 calls out in the last hour (limit 4)" in status["toll_alarm"]["reason"]
        assert "TOLL ALARM: call out refused, extension 101: 2 calls out at once (limit 2)" in pbx.log_text()
        pbx.wait_cdr(lambda r: r["dst"] == "810442079461002")
        listed = subprocess.run(EDGEPBX + ["cdr", "list", "--config", str(pbx.config), "--json"], capture_output=True,
                                text=True, check=True, cwd=ROOT).stdout
        outcomes = sorted((r["disposition"], r["trunk"] or "-") for r in json.loads(listed))
        assert outcomes == [("answered", "main")] * 4 + [("failed", "-")] * 2, outcomes  # refused: no trunk
    finally:
        lab.release_phones()
        pbx.stop()
        provider.kill()
