"""Call pickup as in the memo: another phone dials 0 (or 0#, or ** + extension) and takes over the
call ringing on a colleague's phone."""
from __future__ import annotations

import pjsua2 as pj
import pytest

from audio import has_tone
from conftest import TONES, phones_on, start_pbx, write_office
from phones import background_calls
from sipp import finish_sipp, start_sipp


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    pbx = start_pbx(write_office(tmp_path_factory.mktemp("pickup"), no_answer_timeout=20))
    yield pbx
    pbx.stop()


@pytest.fixture
def phones_here(lab, office):
    yield phones_on(lab, office)
    lab.release_phones()


@pytest.mark.parametrize("code", ["0", "0#", "**102"])
def test_another_phone_picks_up_the_ringing_call(office, lab, phones_here, code):
    caller, ringing, picker = phones_here("101"), phones_here("102"), phones_here("103")
    ringing.answer = "never"
    call = caller.dial("102")
    lab.wait_for(lambda: ringing.calls and call.saw(pj.PJSIP_INV_STATE_EARLY), 10, "102 to ring")
    pick = picker.dial(code)
    lab.wait_for(lambda: pick.state == pj.PJSIP_INV_STATE_CONFIRMED and call.state == pj.PJSIP_INV_STATE_CONFIRMED,
                 5, "the pickup to connect caller and picker")
    lab.wait_for(lambda: ringing.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "102 to stop ringing")
    assert ringing.last_call.last_code == 487
    lab.poll(2.0)
    pick.hangup_now()
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "the caller to be hung up")
    lab.poll(0.3)
    assert has_tone(call.record_path, TONES["103"]) and has_tone(pick.record_path, TONES["101"])
    record = office.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102" and r["picked_up_by"])
    assert record["picked_up_by"] == "103" and record["disposition"] == "answered" and record["billsec"] >= 1
    assert len([r for r in office.cdrs() if r["id"] == record["id"]]) == 1  # one call, one record


def test_pickup_with_nothing_ringing_plays_a_short_tone_and_ends(office, lab, phones_here):
    picker = phones_here("103")
    pick = picker.dial("0")
    lab.wait_for(lambda: pick.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "the pickup attempt to end")
    assert pick.saw(pj.PJSIP_INV_STATE_CONFIRMED)
    lab.poll(0.2)
    assert has_tone(pick.record_path, 950) and has_tone(pick.record_path, 1400), "the special information tone"
    assert not [r for r in office.cdrs() if r["dst"] == "0"], "nothing happened: no call record"


def test_with_two_calls_ringing_the_oldest_is_picked_up(office, lab, phones_here, tmp_path):
    """SIPp places the two calls (the test process has room for only four pjsua2 legs)."""
    first, second, picker = phones_here("102"), phones_here("103"), phones_here("105")
    first.answer = second.answer = "never"
    codec = {"CODEC": "PCMA/8000", "PT": "8", "HOLD": "1000"}
    older = start_sipp("call_answered.xml", tmp_path, office.sip_port, service="102", user="101",
                       password="pw-101-secret", fill=codec, timeout=20)
    lab.wait_for(lambda: first.calls and first.last_call.saw(pj.PJSIP_INV_STATE_EARLY), 5, "102 to ring")
    lab.poll(0.3)
    newer = start_sipp("call_answered.xml", tmp_path, office.sip_port, service="103", user="104",
                       password="pw-104-secret", fill=codec, timeout=20)
    lab.wait_for(lambda: second.calls and second.last_call.saw(pj.PJSIP_INV_STATE_EARLY), 5, "103 to ring")
    pick = picker.dial("0")
    lab.wait_for(lambda: pick.state == pj.PJSIP_INV_STATE_CONFIRMED, 5, "the pickup to connect")
    lab.wait_for(lambda: first.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "102 to stop ringing")
    assert second.last_call.state != pj.PJSIP_INV_STATE_DISCONNECTED, "103 still rings: only the oldest was taken"
    assert finish_sipp(*older, 20, lab).returncode == 0, "101's call was answered, then hung up"
    record = office.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102")
    assert record["picked_up_by"] == "105" and record["disposition"] == "answered"
    second.last_call.hangup_now()
    finish_sipp(*newer, 20, lab)


def test_pickup_finds_its_call_among_many_ringing(office, lab, phones_here):
    background_calls(lab, phones_here("104"), phones_here("105"), 12, answer="never")
    caller, ringing, picker = phones_here("101"), phones_here("102"), phones_here("103")
    ringing.answer = "never"
    call = caller.dial("102")
    lab.wait_for(lambda: ringing.calls and call.saw(pj.PJSIP_INV_STATE_EARLY), 10, "102 to ring")
    pick = picker.dial("**102")
    lab.wait_for(lambda: pick.state == pj.PJSIP_INV_STATE_CONFIRMED and call.state == pj.PJSIP_INV_STATE_CONFIRMED,
                 5, "the pickup to connect")
    lab.poll(1.5)
    pick.hangup_now()
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "the call to end")
    assert has_tone(call.record_path, TONES["103"]) and has_tone(pick.record_path, TONES["101"])
    record = office.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102" and r["picked_up_by"])
    assert record["picked_up_by"] == "103" and record["disposition"] == "answered"
