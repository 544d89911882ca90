"""SIP signalling through the running appliance, driven by SIPp: authentication, and each way a
call can fail, with the SIP response the caller gets and the CDR disposition it leaves."""
from __future__ import annotations

import re
import socket
import time

import pjsua2 as pj
import pytest

from conftest import start_pbx, write_office
from sipp import run_sipp


def test_register_with_the_right_password_is_accepted(pbx, tmp_path):
    result = run_sipp("register.xml", tmp_path, pbx.sip_port, service="103", user="103", password="pw-103-secret")
    assert result.returncode == 0, result.output
    assert result.response_codes == [401, 200]


def test_register_with_a_wrong_password_is_forbidden(pbx, tmp_path):
    result = run_sipp("register.xml", tmp_path, pbx.sip_port, service="103", user="103", password="not-it",
                      expected="403")
    assert result.returncode == 0, result.output
    assert result.response_codes == [401, 403]


def test_call_with_a_wrong_password_is_forbidden_and_leaves_no_cdr(pbx, tmp_path):
    before = len(pbx.cdrs())
    result = run_sipp("call_expect_failure.xml", tmp_path, pbx.sip_port, service="102", user="101",
                      password="wrong-password", expected="403")
    assert result.returncode == 0, result.output
    assert result.response_codes == [407, 403]
    time.sleep(0.3)
    assert len(pbx.cdrs()) == before


def test_call_to_an_unregistered_extension_gets_480_and_a_failed_cdr(pbx, tmp_path):
    result = run_sipp("call_expect_failure.xml", tmp_path, pbx.sip_port, service="105", user="101",
                      password="pw-101-secret", expected="480")
    assert result.returncode == 0, result.output
    assert result.response_codes[-1] == 480
    record = pbx.wait_cdr(lambda r: r["dst"] == "105")
    assert record["disposition"] == "failed" and record["answered_at"] is None and record["billsec"] == 0


def test_call_to_an_unknown_number_gets_404(pbx, tmp_path):
    result = run_sipp("call_expect_failure.xml", tmp_path, pbx.sip_port, service="999", user="101",
                      password="pw-101-secret", expected="404")
    assert result.returncode == 0, result.output
    assert pbx.wait_cdr(lambda r: r["dst"] == "999")["disposition"] == "failed"


def test_callee_busy_gives_486_and_a_busy_cdr(pbx, lab, phones, tmp_path):
    callee = phones("102")
    callee.answer = 486
    result = run_sipp("call_expect_failure.xml", tmp_path, pbx.sip_port, service="102", user="101",
                      password="pw-101-secret", expected="486", lab=lab)
    assert result.returncode == 0, result.output
    assert callee.calls, "the callee's phone never saw the call"
    record = pbx.wait_cdr(lambda r: r["dst"] == "102" and r["disposition"] == "busy")
    assert record["src"] == "101" and record["answered_at"] is None


def test_caller_cancel_stops_the_ringing_phone_and_leaves_a_cancelled_cdr(pbx, lab, phones, tmp_path):
    callee = phones("103")
    callee.answer = "never"
    result = run_sipp("call_cancel.xml", tmp_path, pbx.sip_port, service="103", user="104",
                      password="pw-104-secret", expected="1000", lab=lab)
    assert result.returncode == 0, result.output
    assert 487 in result.response_codes
    lab.wait_for(lambda: callee.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "callee to stop ringing")
    assert callee.last_call.last_code == 487  # the phone got a CANCEL
    record = pbx.wait_cdr(lambda r: r["src"] == "104" and r["dst"] == "103")
    assert record["disposition"] == "cancelled"
    assert record["billsec"] == 0 and record["recording"] is None


def test_no_answer_times_out_with_480_and_a_no_answer_cdr(pbx, lab, phones, tmp_path):
    callee = phones("104")
    callee.answer = "never"
    started = time.monotonic()
    result = run_sipp("call_expect_failure.xml", tmp_path, pbx.sip_port, service="104", user="102",
                      password="pw-102-secret", expected="480", lab=lab)
    waited = time.monotonic() - started
    assert result.returncode == 0, result.output
    assert 180 in result.response_codes  # the caller heard ringing first
    assert 3.5 <= waited <= 8, f"the fixture's no_answer_timeout is 4 s, the call ended after {waited:.1f} s"
    lab.wait_for(lambda: callee.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "callee to stop ringing")
    record = pbx.wait_cdr(lambda r: r["src"] == "102" and r["dst"] == "104")
    assert record["disposition"] == "no_answer" and 3 <= record["duration"] <= 6


@pytest.mark.parametrize("codec, payload", [("PCMA/8000", "8"), ("PCMU/8000", "0"), ("G722/8000", "9")])
def test_each_office_codec_is_answered_in_kind(pbx, lab, phones, tmp_path, codec, payload):
    phones("105")
    result = run_sipp("call_answered.xml", tmp_path, pbx.sip_port, service="105", user="101",
                      password="pw-101-secret", fill={"CODEC": codec, "PT": payload, "HOLD": "500"}, lab=lab)
    assert result.returncode == 0, result.output  # the 200's SDP carried the offered codec
    record = pbx.wait_cdr(lambda r: r["dst"] == "105" and r["disposition"] == "answered"
                          and r["sip_call_id"] == re.search(r"Call-ID: (\S+)", result.messages).group(1))
    assert record["recording"]


def test_malformed_sip_is_dropped_and_the_edge_keeps_serving(pbx, tmp_path):
    garbage = [b"\x00\xff" * 100, b"INVITE sip:102@x SIP/2.0\r\nVia: nonsense\r\n\r\n",
               b"REGISTER sip:127.0.0.1 SIP/2.0\r\nContent-Length: 99999\r\n\r\nabc", b"SIP/2.0 200 OK\r\n\r\n"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for packet in garbage:
            s.sendto(packet, ("127.0.0.1", pbx.sip_port))
    time.sleep(0.3)
    result = run_sipp("register.xml", tmp_path, pbx.sip_port, service="101", user="101", password="pw-101-secret")
    assert result.returncode == 0, result.output
    assert pbx.proc.poll() is None


def test_the_edge_relays_no_in_dialog_request_to_anywhere_but_the_feature_server(pbx):
    """A request that looks in-dialog (a to-tag, a Route naming the box) for some other host: a
    relayed one would leave from the box's address, where an IP-trusted trunk takes it for the
    office's own (the fuzz run found the box relaying them)."""
    import secrets

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as victim, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        victim.bind(("127.0.0.99", 0))
        victim.settimeout(1.0)
        attacker.bind(("127.0.0.98", 0))
        attacker.settimeout(1.0)
        answers = []
        for method in ("INVITE", "MESSAGE", "BYE"):
            attacker.sendto((
                f"{method} sip:+447700900123@127.0.0.99:{victim.getsockname()[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.98:{attacker.getsockname()[1]};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
                f"Route: <sip:127.0.0.1:{pbx.sip_port};lr>\r\nFrom: <sip:x@127.0.0.98>;tag=1\r\n"
                f"To: <sip:+447700900123@127.0.0.99>;tag=2\r\nCall-ID: {secrets.token_hex(6)}\r\nCSeq: 1 {method}\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(), ("127.0.0.1", pbx.sip_port))
            answers.append(attacker.recv(65535).split(b"\r\n")[0])
        try:
            relayed = victim.recv(65535)
        except socket.timeout:
            relayed = b""
    assert relayed == b"", relayed[:200]
    assert answers == [b"SIP/2.0 403 Forbidden"] * 3
    assert "refused (not relayed)" in pbx.log_text()


@pytest.fixture
def strict_pbx(tmp_path):
    pbx = start_pbx(write_office(tmp_path, extra="security: {auth_failures_before_ban: 3, ban_seconds: 60}"))
    yield pbx
    pbx.stop()


def test_repeated_wrong_passwords_ban_the_source_address(strict_pbx, tmp_path):
    for _ in range(3):
        bad = run_sipp("register.xml", tmp_path, strict_pbx.sip_port, service="101", user="101",
                       password="guess", expected="403")
        assert bad.returncode == 0, bad.output
    # Now even the right password gets no answer from that address, and the log says why.
    good = run_sipp("register.xml", tmp_path, strict_pbx.sip_port, service="101", user="101",
                    password="pw-101-secret", timeout=4)
    assert good.returncode != 0 and good.response_codes == []  # not even challenged
    assert "banning 127.0.0.1" in strict_pbx.log_text()
