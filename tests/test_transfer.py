"""Attended transfer by DTMF, as in the memo: during a call a phone presses #, dials an extension
and # (or waits 3 s); the other party hears music on hold; hanging up connects the held party with
the target; * cancels, and a target that does not answer gives the held party back.

Who hears whom is checked by audio: every phone plays its own tone, the music on hold has a 659 Hz
drone no phone plays."""
from __future__ import annotations

import pjsua2 as pj
import pytest

from audio import has_tone, has_tone_in_part, lacks_tone
from conftest import TONES, start_pbx, write_office
from phones import background_calls, talk

MOH_HZ = 659.26
CONFIRMED, DISCONNECTED = pj.PJSIP_INV_STATE_CONFIRMED, pj.PJSIP_INV_STATE_DISCONNECTED


@pytest.fixture(scope="module")
def pbx(tmp_path_factory):
    """This module's appliance: a short no-answer timeout for the unanswered-target case."""
    pbx = start_pbx(write_office(tmp_path_factory.mktemp("transfer"), no_answer_timeout=5))
    yield pbx
    pbx.stop()


def heard(lab, call, name: str, seconds: float = 1.5):
    """What `call`'s phone hears during the next `seconds`."""
    path = call.record_phase(name)
    lab.poll(seconds)
    call.stop_recording()
    lab.poll(0.1)
    return path


def connected_call(lab, phones, a: str = "101", b: str = "102"):
    calls = talk(lab, phones(a), phones(b))
    lab.poll(0.5)
    return calls


def assert_101_talks_to_103(lab, held, target_call, phase: str) -> None:
    """By audio: 101 (the held party) and 103 (the target) hear each other, no music, no 102."""
    assert held.state == CONFIRMED and target_call.state == CONFIRMED
    after = heard(lab, held, phase), heard(lab, target_call, phase)
    assert has_tone(after[0], TONES["103"]) and lacks_tone(after[0], MOH_HZ), "101 now talks to 103"
    assert has_tone(after[1], TONES["101"]) and lacks_tone(after[1], TONES["102"])


def consult_and_join(lab, phones, transferor):
    """102 (on `transferor`, its call with 101 held) calls 103, then joins the two calls with its
    transfer key (REFER with Replaces); returns 103's phone."""
    target = phones("103")
    consultation = transferor.phone.dial("103")
    lab.wait_for(lambda: consultation.state == CONFIRMED and target.calls and target.last_call.state == CONFIRMED,
                 5, "102 to reach 103")
    lab.poll(0.5)
    transferor.xferReplaces(consultation, pj.CallOpParam(True))
    lab.wait_for(lambda: transferor.state == DISCONNECTED and consultation.state == DISCONNECTED, 5,
                 "both of 102's calls to be released")
    assert 200 in transferor.transfer_codes
    lab.poll(0.3)
    return target


def start_transfer(lab, phones, pbx, call_of_transferor, target: str = "103", answer_delay: float = 1.0):
    target_phone = phones(target)
    target_phone.answer_delay = answer_delay
    call_of_transferor.dialDtmf(f"#{target}#")
    lab.wait_for(lambda: target_phone.calls and target_phone.last_call.saw(pj.PJSIP_INV_STATE_EARLY), 5,
                 f"{target} to ring")
    return target_phone


def test_hanging_up_hands_the_held_party_to_the_target(lab, phones, pbx):
    held, transferor = connected_call(lab, phones)
    target = start_transfer(lab, phones, pbx, transferor, answer_delay=2.0)
    on_hold = heard(lab, held, "on-hold", 1.2)
    assert has_tone(on_hold, MOH_HZ) and lacks_tone(on_hold, TONES["102"]), "the held party hears music only"
    lab.wait_for(lambda: target.last_call.state == CONFIRMED, 5, "103 to answer")
    lab.poll(0.3)
    consult = heard(lab, transferor, "consultation")
    assert has_tone(consult, TONES["103"]) and lacks_tone(consult, TONES["101"]), "102 talks to 103 alone"
    assert has_tone(heard(lab, held, "still-held", 1.0), MOH_HZ)

    transferor.hangup_now()
    lab.wait_for(lambda: transferor.state == DISCONNECTED, 5, "102 to hang up")
    lab.poll(0.3)
    assert_101_talks_to_103(lab, held, target.last_call, "after")

    held.hangup_now()
    lab.wait_for(lambda: target.last_call.state == DISCONNECTED, 5, "103 to be hung up")
    original = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102")
    assert original["transferred_to"] == "103" and original["disposition"] == "answered"
    linked = pbx.wait_cdr(lambda r: r["linked_id"] == original["id"])
    assert (linked["src"], linked["dst"], linked["disposition"]) == ("102", "103", "answered")
    assert linked["billsec"] >= 2 and linked["recording"] and linked["recording"] != original["recording"]
    assert has_tone(linked["recording"], TONES["101"]) and has_tone(linked["recording"], TONES["103"])
    assert lacks_tone(original["recording"], TONES["103"]), "the consultation is not in the first call's recording"


@pytest.mark.parametrize("digits, linked", [
    ("#103#", ("busy", 486)),  # 103 answers 486
    ("#55#", None),            # no such extension, and no trunk in this office: nothing is dialled
])
def test_a_busy_or_unroutable_target_gives_the_held_party_back(lab, phones, pbx, digits, linked):
    held, transferor = connected_call(lab, phones)
    phones("103").answer = 486
    transferor.dialDtmf(digits)
    lab.poll(1.0)
    back = heard(lab, held, "back")
    assert has_tone(back, TONES["102"]) and lacks_tone(back, MOH_HZ)
    held.hangup_now()
    lab.wait_for(lambda: transferor.state == DISCONNECTED, 5, "the call to end")
    original = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102" and r["ended_at"])
    assert not original["transferred_to"]
    found = [(r["disposition"], r["sip_code"]) for r in pbx.cdrs() if r["linked_id"] == original["id"]]
    assert found == ([linked] if linked else [])


def test_unanswered_target_gives_the_held_party_back(lab, phones, pbx):
    held, transferor = connected_call(lab, phones)
    target = phones("103")
    target.answer = "never"
    transferor.dialDtmf("#103")  # no closing #: dialled after the 3 s pause
    lab.wait_for(lambda: target.calls and target.last_call.saw(pj.PJSIP_INV_STATE_EARLY), 8, "103 to ring")
    lab.wait_for(lambda: target.last_call.state == DISCONNECTED, 8, "103 to stop ringing after the timeout")
    lab.poll(0.3)
    back = heard(lab, held, "back"), heard(lab, transferor, "back")
    assert has_tone(back[0], TONES["102"]) and lacks_tone(back[0], MOH_HZ), "101 talks to 102 again"
    assert has_tone(back[1], TONES["101"])
    transferor.hangup_now()
    lab.wait_for(lambda: held.state == DISCONNECTED, 5, "the call to end")
    original = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102" and r["linked_id"] is None
                            and not r["transferred_to"] and r["billsec"] >= 5)
    linked = pbx.wait_cdr(lambda r: r["linked_id"] == original["id"])
    assert linked["disposition"] == "no_answer" and linked["billsec"] == 0


def test_star_cancels_and_reconnects(lab, phones, pbx):
    held, transferor = connected_call(lab, phones)
    target = start_transfer(lab, phones, pbx, transferor, answer_delay=0.0)
    lab.wait_for(lambda: target.last_call.state == CONFIRMED, 5, "103 to answer")
    lab.poll(0.5)
    transferor.dialDtmf("*")
    lab.wait_for(lambda: target.last_call.state == DISCONNECTED, 5, "103 to be hung up by the cancel")
    lab.poll(0.3)
    back = heard(lab, held, "back"), heard(lab, transferor, "back")
    assert has_tone(back[0], TONES["102"]) and lacks_tone(back[0], MOH_HZ)
    assert has_tone(back[1], TONES["101"]) and lacks_tone(back[1], TONES["103"])
    held.hangup_now()
    lab.wait_for(lambda: transferor.state == DISCONNECTED, 5, "the call to end")
    original = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102" and not r["transferred_to"]
                            and any(x["linked_id"] == r["id"] and x["disposition"] == "answered" for x in pbx.cdrs()))
    assert original["disposition"] == "answered"


def test_held_party_hanging_up_leaves_the_consultation_going(lab, phones, pbx):
    held, transferor = connected_call(lab, phones)
    target = start_transfer(lab, phones, pbx, transferor, answer_delay=0.0)
    lab.wait_for(lambda: target.last_call.state == CONFIRMED, 5, "103 to answer")
    held.hangup_now()
    lab.wait_for(lambda: held.state == DISCONNECTED, 5, "101 to hang up")
    lab.poll(0.5)
    assert transferor.state == CONFIRMED and target.last_call.state == CONFIRMED
    talk = heard(lab, transferor, "talk"), heard(lab, target.last_call, "talk")
    assert has_tone(talk[0], TONES["103"]) and has_tone(talk[1], TONES["102"])
    transferor.hangup_now()
    lab.wait_for(lambda: target.last_call.state == DISCONNECTED, 5, "103 to be hung up")
    original = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102" and not r["transferred_to"]
                            and any(x["linked_id"] == r["id"] and x["billsec"] >= 1 for x in pbx.cdrs()))
    assert original["disposition"] == "answered"


# -- the phone's own transfer key: SIP REFER -------------------------------------------------------

def test_blind_refer_rings_the_target_for_the_other_party(lab, phones, pbx):
    held, transferor = connected_call(lab, phones)
    target = phones("103")
    target.answer_delay = 2.5
    transferor.xfer(f"sip:103@127.0.0.1:{pbx.sip_port}", pj.CallOpParam(True))
    lab.wait_for(lambda: transferor.state == DISCONNECTED, 5, "the transferring phone to be released")
    assert 200 in transferor.transfer_codes, "NOTIFY told the phone the transfer went through"
    lab.wait_for(lambda: target.calls and target.last_call.saw(pj.PJSIP_INV_STATE_EARLY), 5, "103 to ring")
    ringing = heard(lab, held, "ringback", 1.2)  # (ringback: 1 s on, 4 s off; the window may start late in it)
    assert has_tone_in_part(ringing, 425) and lacks_tone(ringing, TONES["102"]), "101 hears ringback meanwhile"
    lab.wait_for(lambda: target.last_call.state == CONFIRMED, 5, "103 to answer")
    lab.poll(0.3)
    assert_101_talks_to_103(lab, held, target.last_call, "after")
    held.hangup_now()
    lab.wait_for(lambda: target.last_call.state == DISCONNECTED, 5, "103 to be hung up")
    original = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102" and r["transferred_to"] == "103"
                            and any(x["linked_id"] == r["id"] and x["disposition"] == "answered" for x in pbx.cdrs()))
    assert original["disposition"] == "answered"


def test_attended_refer_with_replaces_joins_the_two_calls(lab, phones, pbx):
    held, transferor = connected_call(lab, phones)
    transferor.setHold(pj.CallOpParam(True))  # the phone's hold key: the other party hears music
    lab.poll(0.5)
    on_hold = heard(lab, held, "phone-hold", 1.2)
    assert has_tone(on_hold, MOH_HZ) and lacks_tone(on_hold, TONES["102"])
    target = consult_and_join(lab, phones, transferor)
    assert_101_talks_to_103(lab, held, target.last_call, "joined")
    held.hangup_now()
    lab.wait_for(lambda: target.last_call.state == DISCONNECTED, 5, "103 to be hung up")
    original = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102" and r["transferred_to"] == "103")
    linked = pbx.wait_cdr(lambda r: r["linked_id"] == original["id"] and r["ended_at"])
    assert (linked["src"], linked["dst"], linked["disposition"]) == ("102", "103", "answered")
    assert has_tone(linked["recording"], TONES["101"]) and has_tone(linked["recording"], TONES["103"])


def test_other_keys_reach_the_other_party(lab, phones, pbx):
    """An IVR the office calls must get its digits: only the transfer key stays in the box."""
    caller_call, callee_call = connected_call(lab, phones)
    caller_call.dialDtmf("12*0")
    lab.wait_for(lambda: callee_call.digits_heard == "12*0", 5, "102 to receive 12*0")
    callee_call.send_info_dtmf("98")
    lab.wait_for(lambda: caller_call.digits_heard == "98", 5, "101 to receive 98 (sent as INFO)")


@pytest.mark.parametrize("target", ["sip:55@127.0.0.1", "sip:nobody@127.0.0.1"])
def test_refer_to_nowhere_is_refused_and_the_call_goes_on(lab, phones, pbx, target):
    held, transferor = connected_call(lab, phones)
    transferor.xfer(target, pj.CallOpParam(True))
    lab.wait_for(lambda: 404 in transferor.transfer_codes, 5, "NOTIFY 404 to the phone")
    lab.poll(0.3)
    assert transferor.state == CONFIRMED and held.state == CONFIRMED
    assert has_tone(heard(lab, held, "still"), TONES["102"]) and has_tone(heard(lab, transferor, "still"), TONES["101"])


def test_a_refer_hand_over_from_another_user_is_ignored(lab, phones, pbx):
    """The feature server takes REFERs (and the portal's call backs) on an abstract Unix socket, which any
    local user can reach: only the box's own user is obeyed. Needs root, as `make test` runs."""
    import json
    import os
    import subprocess

    from appliance.config import load
    from appliance.kamailio.render import control_socket

    assert os.geteuid() == 0, "run the suite as root (make test does)"
    held, transferor = connected_call(lab, phones)
    target = phones("103")
    forged = json.dumps({"call_id": transferor.getInfo().callIdString, "refer_to": "<sip:103@127.0.0.1>",
                         "cseq": "9"})
    forged_call_back = json.dumps({"callback": {"extension": "103", "number": "101"}})  # the portal's request
    cfg = load(pbx.config)
    sockets = [control_socket(cfg).lstrip("\0")]  # argv holds no NUL
    sender = ("import socket, sys\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
              "for name in sys.argv[2:]:\n    s.sendto(sys.argv[1].encode(), b'\\0' + name.encode('latin-1'))\n")
    # /usr/bin/python3: Debian's, which nobody may run (the venv's lives under /root)
    for message in (forged, forged_call_back):
        subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", sender, message, *sockets],
                       check=True)
    lab.poll(1.5)
    assert not target.calls, "nobody's forged REFER transferred nothing, and its call back rang nothing"
    assert held.state == CONFIRMED and transferor.state == CONFIRMED
    assert pbx.log_text().count("ignoring a control request from uid 65534") == 2


def test_attended_refer_joins_two_calls_while_many_calls_are_up(lab, phones, pbx):
    """With the PyPI wheel (4 legs a process) the two calls could sit in different worker
    processes and never be joined; one feature server holds them all."""
    load = background_calls(lab, phones("104"), phones("105"), 12)
    held, transferor = connected_call(lab, phones)
    transferor.setHold(pj.CallOpParam(True))
    target = consult_and_join(lab, phones, transferor)
    assert_101_talks_to_103(lab, held, target.last_call, "joined-under-load")
    assert all(call.state == CONFIRMED for call in load), "the other calls went on"
