"""Call pickup as in the memo: another phone dials 0 (or 0#, or ** + extension) and takes over the
call ringing on a colleague's phone."""
from __future__ import annotations

import pjsua2 as pj
import pytest

from audio import has_tone
from conftest import TONES, start_pbx, write_office


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    pbx = start_pbx(write_office(tmp_path_factory.mktemp("pickup"), no_answer_timeout=20))
    yield pbx
    pbx.stop()


@pytest.fixture
def phones_here(lab, office):
    lab.port = office.sip_port

    def make(number: str):
        return lab.phone(number, f"pw-{number}-secret", TONES[number])

    yield make
    lab.ep.hangupAllCalls()
    lab.poll(0.5)
    for phone in lab.phones:
        phone.calls.clear()
        phone.shutdown()
    lab.phones.clear()
    lab.poll(0.2)


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


def test_pickup_with_nothing_ringing_ends_at_once(office, lab, phones_here):
    picker = phones_here("103")
    pick = picker.dial("0")
    lab.wait_for(lambda: pick.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "the pickup attempt to end")
    assert pick.last_code == 480
