"""BLF keys: a phone subscribed to an extension's dialog state (RFC 4235, served by Kamailio's
presence modules) sees it go idle -> ringing -> busy -> idle while the call passes through the
feature server, and picks up the ringing call with the call-id it was notified (INVITE with
Replaces), as Snom, Polycom and Grandstream BLF keys do. The watcher is SIPp; the phones pjsua2."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pjsua2 as pj
import pytest

from audio import has_tone
from conftest import TONES
from sipp import finish_sipp, run_sipp, start_sipp

NS = "{urn:ietf:params:xml:ns:dialog-info}"
CONFIRMED, DISCONNECTED = pj.PJSIP_INV_STATE_CONFIRMED, pj.PJSIP_INV_STATE_DISCONNECTED


def notified_dialogs(messages: str) -> list[list[dict]]:
    """The dialogs of each NOTIFY the watcher received, in order."""
    found = []
    for block in re.split(r"^-{5,}.*$", messages, flags=re.MULTILINE):
        if "message received" not in block or not re.search(r"^\s*NOTIFY sip:", block, re.MULTILINE):
            continue
        body = block[block.find("<?xml"):] if "<?xml" in block else ""
        dialogs = []
        if body.strip():
            root = ET.fromstring(body.strip())
            for dialog in root.iter(f"{NS}dialog"):
                state = dialog.find(f"{NS}state")
                dialogs.append({**dialog.attrib, "state": state.text.strip() if state is not None else ""})
        found.append(dialogs)
    return found


def key_state(dialogs: list[dict]) -> str:
    """What a BLF lamp shows for one NOTIFY."""
    states = {d["state"] for d in dialogs}
    if "confirmed" in states:
        return "busy"
    if states & {"early", "proceeding", "trying"}:
        return "ringing"
    return "idle"


def lamp_history(messages: str) -> list[str]:
    history = []
    for dialogs in notified_dialogs(messages):
        state = key_state(dialogs)
        if not history or history[-1] != state:
            history.append(state)
    return history


def watch(pbx, tmp_path, watched: str, quiet_ms: int = 3000, host: str | None = None):
    """A SIPp BLF key of 104 watching `watched`; `host`: the domain in its request URI."""
    fill = {"QUIET_MS": str(quiet_ms), "EVENT": "dialog", "HOST": host or f"127.0.0.1:{pbx.sip_port}"}
    return start_sipp("blf_watch.xml", tmp_path, pbx.sip_port, service=watched, user="104",
                      password="pw-104-secret", fill=fill, timeout=60)


@pytest.mark.parametrize("host", [None, "pbx.office.example"])
def test_blf_shows_ringing_busy_idle(lab, phones, pbx, tmp_path, host):
    """Also when the phone names the box by another name than the SIP domain in its SUBSCRIBE."""
    caller, callee = phones("101"), phones("102")
    callee.answer_delay = 1.5
    proc, trace = watch(pbx, tmp_path, "102", host=host)
    lab.poll(1.0)
    call = caller.dial("102")
    lab.wait_for(lambda: call.state == CONFIRMED, 8, "102 to answer")
    lab.poll(1.0)
    call.hangup_now()
    lab.wait_for(lambda: callee.last_call.state == DISCONNECTED, 5, "the call to end")
    result = finish_sipp(proc, trace, 60, lab)
    # SIPp ends a subscription by silence and calls that a failed "call"; the NOTIFYs are the test.
    assert 200 in result.response_codes, result.output[-2000:]
    assert lamp_history(result.messages) == ["idle", "ringing", "busy", "idle"], result.messages[-3000:]
    ringing = next(d for n in notified_dialogs(result.messages) for d in n if d["state"] == "early")
    assert ringing.get("call-id") and ringing.get("direction") == "recipient"


def test_blf_key_picks_up_the_ringing_call_by_its_call_id(lab, phones, pbx, tmp_path):
    caller, ringing, picker = phones("101"), phones("102"), phones("103")
    ringing.answer = "never"
    proc, trace = watch(pbx, tmp_path, "102", quiet_ms=4000)
    lab.poll(1.0)
    call = caller.dial("102")
    early: list[dict] = []

    def notified_ringing() -> bool:
        text = trace.read_text() if trace.exists() else ""
        early[:] = [d for n in notified_dialogs(text) for d in n if d["state"] == "early"]
        return bool(early)

    lab.wait_for(notified_ringing, 8, "the BLF watcher to see 102 ringing")
    dialog = early[-1]
    prm = pj.CallOpParam(True)
    prm.opt.videoCount = 0
    replaces = pj.SipHeader()
    replaces.hName = "Replaces"
    replaces.hValue = (f"{dialog['call-id']};to-tag={dialog.get('local-tag', '')};"
                       f"from-tag={dialog.get('remote-tag', '')};early-only")
    prm.txOption.headers.append(replaces)
    from phones import TestCall
    pick = TestCall(picker)
    picker.calls.append(pick)
    pick.makeCall(f"sip:102@127.0.0.1:{pbx.sip_port}", prm)
    lab.wait_for(lambda: pick.state == CONFIRMED and call.state == CONFIRMED, 5, "the BLF pickup to connect")
    lab.wait_for(lambda: ringing.last_call.state == DISCONNECTED, 5, "102 to stop ringing")
    assert ringing.last_call.last_code == 487
    lab.poll(1.5)
    pick.hangup_now()
    lab.wait_for(lambda: call.state == DISCONNECTED, 5, "the call to end")
    lab.poll(0.3)
    assert has_tone(call.record_path, TONES["103"]) and has_tone(pick.record_path, TONES["101"])
    record = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102" and r["picked_up_by"])
    assert record["picked_up_by"] == "103" and record["disposition"] == "answered"
    finish_sipp(proc, trace, 60, lab)


def test_a_wrong_password_and_an_unknown_event_are_refused(pbx, tmp_path):
    wrong = run_sipp("blf_watch.xml", tmp_path, pbx.sip_port, service="102", user="104", password="wrong-password",
                     fill={"QUIET_MS": "500", "EVENT": "dialog", "HOST": "127.0.0.1"}, timeout=10)
    assert 403 in wrong.response_codes and 200 not in wrong.response_codes
    other = run_sipp("blf_watch.xml", tmp_path, pbx.sip_port, service="102", user="104", password="pw-104-secret",
                     fill={"QUIET_MS": "500", "EVENT": "presence", "HOST": "127.0.0.1"}, timeout=10)
    assert other.response_codes[:1] == [489]
